"""Build a small TUF repository with python-tuf and print it as JSON.

Used by tests/python_interop.rs at test time (needs the project venv). Also
prints python-tuf's own answers for succinct hash-bin names and delegation
path-pattern matching, so the Rust implementation is checked against them.
"""
import json
import random
import sys
from datetime import datetime, timezone

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    SuccinctRoles,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

EXP = datetime(2030, 1, 1, tzinfo=timezone.utc)
SER = JSONSerializer(compact=False)


def signed_bytes(signed, *signers):
    md = Metadata(signed)
    for s in signers:
        md.sign(s, append=True)
    return md.to_bytes(SER)


def main():
    top = {r: CryptoSigner.generate_ed25519() for r in ["root", "timestamp", "snapshot", "targets"]}
    proj_signer = CryptoSigner.generate_ecdsa()
    bin_signer = CryptoSigner.generate_ed25519()

    root = Root(expires=EXP, consistent_snapshot=True)
    for role, s in top.items():
        root.add_key(s.public_key, role)
    root_b = signed_bytes(root, top["root"])

    targets = Targets(expires=EXP)
    targets.targets["top.txt"] = TargetFile.from_data("top.txt", b"top level\n", ["sha256", "sha512"])
    proj = DelegatedRole("proj", [proj_signer.public_key.keyid], 1, True, paths=["proj/*"])
    targets.delegations = Delegations({proj_signer.public_key.keyid: proj_signer.public_key}, roles={"proj": proj})
    targets_b = signed_bytes(targets, top["targets"])

    proj_t = Targets(expires=EXP)
    succinct = SuccinctRoles([bin_signer.public_key.keyid], 1, 4, "bin")
    proj_t.delegations = Delegations({bin_signer.public_key.keyid: bin_signer.public_key}, succinct_roles=succinct)
    proj_b = signed_bytes(proj_t, proj_signer)

    target_path = "proj/a.tgz"
    target_data = b"payload of a.tgz\n"
    bins = {}
    for name in succinct.get_roles():
        t = Targets(expires=EXP)
        if name == succinct.get_role_for_target(target_path):
            t.targets[target_path] = TargetFile.from_data(target_path, target_data)
        bins[name] = signed_bytes(t, bin_signer)

    snapshot = Snapshot(expires=EXP)
    snapshot.meta["targets.json"] = MetaFile(1)
    snapshot.meta["proj.json"] = MetaFile(1)
    for name in bins:
        snapshot.meta[f"{name}.json"] = MetaFile(1)
    snapshot_b = signed_bytes(snapshot, top["snapshot"])

    ts = Timestamp(expires=EXP)
    ts.snapshot_meta = MetaFile(1, len(snapshot_b), {"sha256": __import__("hashlib").sha256(snapshot_b).hexdigest()})
    ts_b = signed_bytes(ts, top["timestamp"])

    rng = random.Random(1234)
    bin_checks = []
    for bit_length in [1, 3, 4, 5, 8, 11, 16, 32]:
        sr = SuccinctRoles([], 1, bit_length, "p")
        for i in range(40):
            path = "".join(rng.choice("abc/._-x0é") for _ in range(rng.randint(0, 12)))
            bin_checks.append([bit_length, path, sr.get_role_for_target(path)])

    alphabet = "ab/*?[]!-."
    pattern_checks = []
    fixed = [
        ("a/b", "a/*"), ("a/b/c", "a/*"), ("a", "*"), ("", "*"), ("a/", "a/*"), ("ab", "a?"),
        ("a]", "a[]]"), ("a[", "a["), ("a-", "a[a-]"), ("b", "[!a]"), ("a", "[!a]"),
        ("x.tgz", "*.tgz"), ("dir/x.tgz", "*.tgz"), ("a.b", "a[.]b"), ("a!", "a[!]"),
    ]
    for t, p in fixed:
        pattern_checks.append([t, p, DelegatedRole._is_target_in_pathpattern(t, p)])
    for _ in range(4000):
        t = "".join(rng.choice("ab/.-]") for _ in range(rng.randint(0, 6)))
        p = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 7)))
        pattern_checks.append([t, p, DelegatedRole._is_target_in_pathpattern(t, p)])

    for _ in range(2000):
        t = "".join(rng.choice("ab/.-") for _ in range(rng.randint(0, 8)))
        p = ""
        for ch in t:
            r = rng.random()
            if r < 0.2:
                p += "*"
            elif r < 0.3:
                p += "?"
            elif r < 0.4:
                p += rng.choice(["[ab]", "[!a]", "[.-/]", "[a-b]"])
            else:
                p += ch
        pattern_checks.append([t, p, DelegatedRole._is_target_in_pathpattern(t, p)])

    out = {
        "root": root_b.decode(),
        "timestamp": ts_b.decode(),
        "snapshot": snapshot_b.decode(),
        "targets": targets_b.decode(),
        "proj": proj_b.decode(),
        "bins": {k: v.decode() for k, v in bins.items()},
        "target_path": target_path,
        "target_data": target_data.decode(),
        "bin_checks": bin_checks,
        "pattern_checks": pattern_checks,
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()

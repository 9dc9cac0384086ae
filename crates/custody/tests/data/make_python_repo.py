#!/usr/bin/env python
"""Generate a TUF repository with python-tuf's Metadata API, for the
custody client interop test.

Usage: make_python_repo.py OUT_DIR

Layout written (consistent snapshots, so every file but timestamp.json is
version-prefixed and targets are hash-prefixed, as a static server
publishes them):

  OUT_DIR/metadata/1.root.json, timestamp.json, 1.snapshot.json,
      1.targets.json, 1.delegated.json, 1.hashed.json, 1.bin-N.json
  OUT_DIR/targets/[dir/]HASH.NAME

Delegation tree:
  targets          -> top.txt
    delegated      (paths "delegated/*", terminating) -> delegated/file.txt
    hashed         (paths "hashed/*")  -> succinct hash bins bin-0..bin-7
                                          (bit_length 3) -> hashed/file.txt

Prints a JSON object {target path: hex content} on stdout.
"""

import json
import os
import sys
from datetime import datetime, timedelta, timezone

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


def main() -> None:
    out = sys.argv[1]
    meta_dir = os.path.join(out, "metadata")
    targets_dir = os.path.join(out, "targets")
    os.makedirs(meta_dir, exist_ok=True)
    os.makedirs(targets_dir, exist_ok=True)

    expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=30)
    signers = {}
    root = Metadata(Root(expires=expires, consistent_snapshot=True))
    for role in ["root", "timestamp", "snapshot", "targets"]:
        signer = CryptoSigner.generate_ed25519()
        signers[role] = signer
        root.signed.add_key(signer.public_key, role)

    artifacts = {
        "top.txt": b"top-level target\n",
        "delegated/file.txt": b"delegated target\n",
        "hashed/file.txt": b"hash-binned target\n",
    }

    def add_target(md: Metadata, path: str) -> None:
        data = artifacts[path]
        tf = TargetFile.from_data(path, data, ["sha256", "sha512"])
        md.signed.targets[path] = tf
        for digest in tf.hashes.values():
            dirname, sep, base = path.rpartition("/")
            dest = os.path.join(targets_dir, f"{dirname}{sep}{digest}.{base}")
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as f:
                f.write(data)

    targets = Metadata(Targets(expires=expires))
    add_target(targets, "top.txt")

    delegated_signer = CryptoSigner.generate_ecdsa()
    hashed_signer = CryptoSigner.generate_ed25519()
    bins_signer = CryptoSigner.generate_ed25519()
    signers["delegated"] = delegated_signer
    signers["hashed"] = hashed_signer

    targets.signed.delegations = Delegations(
        keys={
            delegated_signer.public_key.keyid: delegated_signer.public_key,
            hashed_signer.public_key.keyid: hashed_signer.public_key,
        },
        roles={
            "delegated": DelegatedRole(
                "delegated", [delegated_signer.public_key.keyid], 1, True, paths=["delegated/*"]
            ),
            "hashed": DelegatedRole(
                "hashed", [hashed_signer.public_key.keyid], 1, False, paths=["hashed/*"]
            ),
        },
    )

    delegated = Metadata(Targets(expires=expires))
    add_target(delegated, "delegated/file.txt")

    hashed = Metadata(Targets(expires=expires))
    succinct = SuccinctRoles([bins_signer.public_key.keyid], 1, 3, "bin")
    hashed.signed.delegations = Delegations(
        keys={bins_signer.public_key.keyid: bins_signer.public_key},
        roles=None,
        succinct_roles=succinct,
    )
    bins = {name: Metadata(Targets(expires=expires)) for name in succinct.get_roles()}
    bin_name = succinct.get_role_for_target("hashed/file.txt")
    add_target(bins[bin_name], "hashed/file.txt")

    delegated_mds = {"delegated": delegated, "hashed": hashed, **bins}
    for name in bins:
        signers[name] = bins_signer

    serializer = JSONSerializer(compact=False)

    def write(md: Metadata, name: str, versioned: bool = True) -> None:
        md.signatures.clear()
        md.sign(signers[name])
        fname = f"{md.signed.version}.{name}.json" if versioned else f"{name}.json"
        md.to_file(os.path.join(meta_dir, fname), serializer)

    snapshot = Metadata(Snapshot(expires=expires))
    snapshot.signed.meta["targets.json"] = MetaFile(version=1)
    for name, md in delegated_mds.items():
        write(md, name)
        snapshot.signed.meta[f"{name}.json"] = MetaFile(version=md.signed.version)
    write(targets, "targets")
    write(snapshot, "snapshot")

    timestamp = Metadata(Timestamp(expires=expires))
    timestamp.signed.snapshot_meta = MetaFile(version=snapshot.signed.version)
    write(timestamp, "timestamp", versioned=False)
    write(root, "root")

    json.dump({"bin": bin_name, "targets": {k: v.hex() for k, v in artifacts.items()}}, sys.stdout)


if __name__ == "__main__":
    main()

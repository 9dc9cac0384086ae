"""Shared helpers for the benchmark repository scripts (python-tuf Metadata API).

Everything here is deterministic given a seed: Ed25519 private keys are derived
from the seed, Ed25519 signatures are deterministic, expiry dates are fixed and
target contents are a pure function of (seed, target name). Running the same
parameters twice produces byte-identical repositories.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    Delegations,
    Key,
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

SPEC_VERSION = "1.0.31"
BIN_PREFIX = "bins"
# Compact JSON: what a production repository serves (smaller than indent=1).
SERIALIZER = JSONSerializer(compact=True)
TOP_ROLES = (Root.type, Timestamp.type, Snapshot.type, Targets.type)


def parse_expires(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def signer_for(seed: str, role: str) -> CryptoSigner:
    """Ed25519 signer whose private key is derived from (seed, role)."""
    raw = hashlib.sha256(f"custody-bench/{seed}/key/{role}".encode()).digest()
    return CryptoSigner(Ed25519PrivateKey.from_private_bytes(raw))


def target_name(i: int) -> str:
    """A package-archive-like target path for target number i."""
    return f"packages/pkg-{i:06d}/pkg-{i:06d}-1.{i % 7}.{i % 13}.tar.gz"


def target_length(seed: str, name: str) -> int:
    """Deterministic length between 1 KiB and 16 KiB."""
    h = hashlib.sha256(f"custody-bench/{seed}/len/{name}".encode()).digest()
    return 1024 + int.from_bytes(h[:4], "big") % (15 * 1024 + 1)


def target_content(seed: str, name: str) -> bytes:
    """Deterministic pseudo-random content of target_length(seed, name) bytes."""
    n = target_length(seed, name)
    return hashlib.shake_256(f"custody-bench/{seed}/content/{name}".encode()).digest(n)


def target_file_for(name: str, content: bytes) -> TargetFile:
    return TargetFile(
        length=len(content),
        hashes={"sha256": hashlib.sha256(content).hexdigest()},
        path=name,
    )


def stored_target_path(targets_dir: Path, tf: TargetFile) -> Path:
    """Where a consistent-snapshot client fetches tf: dir/<sha256>.<basename>."""
    dirname, _, base = tf.path.rpartition("/")
    d = targets_dir / dirname if dirname else targets_dir
    return d / f"{tf.hashes['sha256']}.{base}"


@dataclass
class Repo:
    """In-memory repository: top-level roles plus hash-bin roles (may be empty)."""

    seed: str
    expires: datetime
    signers: dict[str, CryptoSigner]
    root: Metadata[Root]
    timestamp: Metadata[Timestamp]
    snapshot: Metadata[Snapshot]
    targets: Metadata[Targets]
    bins: dict[str, Metadata[Targets]]
    succinct: SuccinctRoles | None


def new_repo(seed: str, expires: datetime, bit_length: int) -> Repo:
    """Unsigned repository with keys, consistent snapshots and (if bit_length>0)
    a TAP 15 succinct hash-bin delegation from targets to 2**bit_length bins."""
    roles = list(TOP_ROLES) + ([BIN_PREFIX] if bit_length > 0 else [])
    signers = {r: signer_for(seed, r) for r in roles}
    root = Root(expires=expires, consistent_snapshot=True, spec_version=SPEC_VERSION)
    for r in TOP_ROLES:
        root.add_key(signers[r].public_key, r)
    targets = Targets(expires=expires, spec_version=SPEC_VERSION)
    bins: dict[str, Metadata[Targets]] = {}
    succinct = None
    if bit_length > 0:
        succinct = SuccinctRoles(
            keyids=[], threshold=1, bit_length=bit_length, name_prefix=BIN_PREFIX
        )
        targets.delegations = Delegations(keys={}, roles=None, succinct_roles=succinct)
        key: Key = signers[BIN_PREFIX].public_key
        targets.add_key(key)  # adds to succinct_roles.keyids
        for name in succinct.get_roles():
            bins[name] = Metadata(Targets(expires=expires, spec_version=SPEC_VERSION))
    return Repo(
        seed=seed,
        expires=expires,
        signers=signers,
        root=Metadata(root),
        timestamp=Metadata(Timestamp(expires=expires, spec_version=SPEC_VERSION)),
        snapshot=Metadata(Snapshot(expires=expires, spec_version=SPEC_VERSION)),
        targets=Metadata(targets),
        bins=bins,
        succinct=succinct,
    )


def bin_for(repo: Repo, name: str) -> str | None:
    return repo.succinct.get_role_for_target(name) if repo.succinct else None


def add_target(repo: Repo, tf: TargetFile) -> str:
    """Adds tf to its bin (or to top-level targets); returns the role name."""
    role = bin_for(repo, tf.path)
    md = repo.bins[role] if role else repo.targets
    md.signed.targets[tf.path] = tf
    return role or Targets.type


def sign_all(repo: Repo) -> None:
    """Fills snapshot meta and signs every role, bottom-up."""
    for name, md in repo.bins.items():
        md.sign(repo.signers[BIN_PREFIX], append=False)
        repo.snapshot.signed.meta[f"{name}.json"] = MetaFile(version=md.signed.version)
    repo.targets.sign(repo.signers[Targets.type], append=False)
    repo.snapshot.signed.meta["targets.json"] = MetaFile(version=repo.targets.signed.version)
    repo.snapshot.sign(repo.signers[Snapshot.type], append=False)
    repo.timestamp.signed.snapshot_meta = MetaFile(version=repo.snapshot.signed.version)
    repo.timestamp.sign(repo.signers[Timestamp.type], append=False)
    repo.root.sign(repo.signers[Root.type], append=False)


def write_bytes(path: Path, data: bytes) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


def write_metadata(repo: Repo, metadata_dir: Path) -> dict[str, int]:
    """Writes consistent-snapshot file names (<version>.<role>.json; timestamp.json
    unversioned; root also as root.json). Returns {file name: bytes}."""
    written: dict[str, int] = {}

    def put(fname: str, md: Metadata) -> None:
        written[fname] = write_bytes(metadata_dir / fname, md.to_bytes(SERIALIZER))

    put(f"{repo.root.signed.version}.root.json", repo.root)
    put("root.json", repo.root)
    put("timestamp.json", repo.timestamp)
    put(f"{repo.snapshot.signed.version}.snapshot.json", repo.snapshot)
    put(f"{repo.targets.signed.version}.targets.json", repo.targets)
    for name, md in repo.bins.items():
        put(f"{md.signed.version}.{name}.json", md)
    return written



#!/usr/bin/env python3
"""Generate a TUF repository for the custody client benchmarks (python-tuf Metadata API).

Two shapes:

* hash-bin repository (default): N targets (default 100,000) distributed over
  2**bit_length succinct hash bins (TAP 15; default 256 bins), consistent
  snapshots, Ed25519 keys (one per top-level role plus one shared by all bins).
  The metadata lists all N targets with the correct sha256 and length of their
  content, but only --stored of the target files (default 8, spread over the
  index range) are written to disk: the clients download one of those, and
  writing 100,000 small files would only cost disk and time. Target content is a
  pure function of (seed, name) (see _tufrepo.target_content), so any target file
  can be regenerated exactly.

* single-target repository (--target-file FILE): one target (FILE, hard-linked
  or, across file systems, symlinked into the targets dir) listed directly in
  top-level targets.json, no delegation. Used by the streaming verification bench.

Output layout (OUT):
    OUT/root.json                 initial trusted root for clients (= 1.root.json)
    OUT/metadata/                 serve as the metadata URL
        1.root.json root.json timestamp.json 1.snapshot.json 1.targets.json
        1.bins-00.json .. 1.bins-ff.json
    OUT/targets/                  serve as the target base URL
        packages/pkg-NNNNNN/<sha256>.<basename>   (consistent-snapshot names)
    OUT/manifest.json             parameters, stored targets (name, length,
                                  sha256, bin), metadata byte counts; written
                                  last, doubles as the cache marker

Deterministic given --seed. Cached: when OUT/manifest.json exists with the same
parameters the script prints the manifest and exits without work. The repository
is built in a sibling temporary directory and renamed into place, so an
interrupted run never leaves a half-written OUT that looks complete.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _tufrepo as tr  # noqa: E402

FORMAT_VERSION = 1


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--targets", type=int, default=100_000, help="number of targets (default 100000)")
    p.add_argument("--bit-length", type=int, default=8, help="hash-bin bit length; 8 = 256 bins (default 8)")
    p.add_argument("--stored", type=int, default=8, help="target files written to disk (default 8)")
    p.add_argument("--seed", default="custody", help="determinism seed (default 'custody')")
    p.add_argument("--expires", default="2036-01-01T00:00:00Z", help="expiry of every role")
    p.add_argument("--target-file", type=Path, help="single-target mode: the file to publish")
    p.add_argument("--target-name", default="blobs/large.bin", help="target path in single-target mode")
    p.add_argument("--force", action="store_true", help="regenerate even if cached")
    return p.parse_args()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def params_of(a: argparse.Namespace) -> dict:
    params: dict = {"format": FORMAT_VERSION, "seed": a.seed, "expires": a.expires}
    if a.target_file:
        st = a.target_file.stat()
        params.update(
            mode="single-target",
            target_file=str(a.target_file.resolve()),
            target_name=a.target_name,
            target_size=st.st_size,
            target_mtime_ns=st.st_mtime_ns,
        )
    else:
        params.update(
            mode="hash-bins", targets=a.targets, bit_length=a.bit_length, stored=a.stored
        )
    return params


def link_or_copy(src: Path, dst: Path) -> str:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
        return "hardlink"
    except OSError:
        os.symlink(src.resolve(), dst)
        return "symlink"


def build_hash_bins(a: argparse.Namespace, tmp: Path) -> dict:
    if a.targets < 1 or not 1 <= a.stored <= a.targets:
        raise SystemExit("make_repo: need targets >= 1 and 1 <= stored <= targets")
    repo = tr.new_repo(a.seed, tr.parse_expires(a.expires), a.bit_length)
    stored_idx = sorted({j * a.targets // a.stored + a.targets // (2 * a.stored) for j in range(a.stored)})
    stored_set = set(stored_idx)
    stored = []
    for i in range(a.targets):
        name = tr.target_name(i)
        content = tr.target_content(a.seed, name)
        tf = tr.target_file_for(name, content)
        role = tr.add_target(repo, tf)
        if i in stored_set:
            tr.write_bytes(tr.stored_target_path(tmp / "targets", tf), content)
            stored.append(
                {"index": i, "name": name, "length": tf.length, "sha256": tf.hashes["sha256"], "role": role}
            )
    tr.sign_all(repo)
    written = tr.write_metadata(repo, tmp / "metadata")
    return {"stored_targets": stored, "metadata_bytes": written, "bins": len(repo.bins)}


def build_single(a: argparse.Namespace, tmp: Path) -> dict:
    repo = tr.new_repo(a.seed, tr.parse_expires(a.expires), 0)
    size = a.target_file.stat().st_size
    digest = sha256_file(a.target_file)
    tf = tr.TargetFile(length=size, hashes={"sha256": digest}, path=a.target_name)
    tr.add_target(repo, tf)
    how = link_or_copy(a.target_file, tr.stored_target_path(tmp / "targets", tf))
    tr.sign_all(repo)
    written = tr.write_metadata(repo, tmp / "metadata")
    return {
        "stored_targets": [
            {"index": 0, "name": a.target_name, "length": size, "sha256": digest, "role": "targets", "stored_as": how}
        ],
        "metadata_bytes": written,
        "bins": 0,
    }


def main() -> int:
    a = parse_args()
    params = params_of(a)
    out: Path = a.out
    manifest_path = out / "manifest.json"
    if not a.force and manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            old = {}
        if old.get("params") == params:
            old["cached"] = True
            print(json.dumps(old))
            return 0

    t0 = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    built = build_single(a, tmp) if a.target_file else build_hash_bins(a, tmp)
    shutil.copyfile(tmp / "metadata" / "1.root.json", tmp / "root.json")
    manifest = {"params": params, **built, "generation_seconds": round(time.perf_counter() - t0, 3)}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.rename(tmp, out)
    manifest["cached"] = False
    print(json.dumps(manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""python-tuf baseline for the repository-authoring benchmark.

With python-tuf's Metadata API (same repository shape as make_repo.py: N
targets, 2**bit_length succinct hash bins, consistent snapshots, Ed25519,
compact JSON):

1. create: generate and hash N target contents (timed separately, not
   part of the comparison: a release pipeline or artifact store knows each
   upload's length and digest; custody's bench reads the same (name, length,
   sha256) inputs from --entries-out), build targets + bins metadata, sign
   every role, write every metadata file;
2. add one target, stateless (how a CI publishing job works): read
   timestamp.json, the snapshot and the one affected bin from disk, add the
   target, bump versions and re-sign only that bin, snapshot and timestamp,
   write the three new files (consistent snapshots: new versioned names);
3. add one more target with the repository kept in memory (same re-signing,
   no parsing), for a lower bound.

Prints one JSON object: wall times (seconds) per phase and bytes written.
Runs in a temporary directory that is removed afterwards (unless --keep).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

START = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _tufrepo as tr  # noqa: E402
from tuf.api.metadata import Metadata, MetaFile, Snapshot, Targets, Timestamp  # noqa: E402


def progress(what: str, n: int) -> None:
    """One progress line on stderr: the bench reports the last one if this
    run is stopped at its time limit."""
    print(f"progress {what} {n} at {time.perf_counter() - START:.1f} s", file=sys.stderr, flush=True)


def add_one_from_disk(md_dir: Path, seed: str, tf: tr.TargetFile) -> dict:
    """Stateless add: parse what is needed from disk, re-sign bin, snapshot, timestamp."""
    c0 = time.process_time()
    t0 = time.perf_counter()
    ts = Metadata[Timestamp].from_file(str(md_dir / "timestamp.json"))
    snap_v = ts.signed.snapshot_meta.version
    snap = Metadata[Snapshot].from_file(str(md_dir / f"{snap_v}.snapshot.json"))
    targets_v = snap.signed.meta["targets.json"].version
    top = Metadata[Targets].from_file(str(md_dir / f"{targets_v}.targets.json"))
    succinct = top.signed.delegations.succinct_roles
    role = succinct.get_role_for_target(tf.path)
    bin_v = snap.signed.meta[f"{role}.json"].version
    bin_md = Metadata[Targets].from_file(str(md_dir / f"{bin_v}.{role}.json"))
    t_load = time.perf_counter() - t0

    t1 = time.perf_counter()
    bin_md.signed.targets[tf.path] = tf
    bin_md.signed.version += 1
    bin_md.sign(tr.signer_for(seed, tr.BIN_PREFIX), append=False)
    snap.signed.meta[f"{role}.json"] = MetaFile(version=bin_md.signed.version)
    snap.signed.version += 1
    snap.sign(tr.signer_for(seed, Snapshot.type), append=False)
    ts.signed.snapshot_meta = MetaFile(version=snap.signed.version)
    ts.signed.version += 1
    ts.sign(tr.signer_for(seed, Timestamp.type), append=False)
    t_sign = time.perf_counter() - t1

    t2 = time.perf_counter()
    written = {
        f"{bin_md.signed.version}.{role}.json": tr.write_bytes(
            md_dir / f"{bin_md.signed.version}.{role}.json", bin_md.to_bytes(tr.SERIALIZER)
        ),
        f"{snap.signed.version}.snapshot.json": tr.write_bytes(
            md_dir / f"{snap.signed.version}.snapshot.json", snap.to_bytes(tr.SERIALIZER)
        ),
        "timestamp.json": tr.write_bytes(md_dir / "timestamp.json", ts.to_bytes(tr.SERIALIZER)),
    }
    t_write = time.perf_counter() - t2
    return {
        "role": role,
        "load_seconds": round(t_load, 4),
        "sign_seconds": round(t_sign, 4),
        "write_seconds": round(t_write, 4),
        "total_seconds": round(time.perf_counter() - t0, 4),
        "cpu_seconds": round(time.process_time() - c0, 4),
        "files_written": written,
        "bytes_written": sum(written.values()),
    }


def add_one_in_memory(repo: tr.Repo, md_dir: Path, tf: tr.TargetFile) -> dict:
    c0 = time.process_time()
    t0 = time.perf_counter()
    role = tr.add_target(repo, tf)
    bin_md = repo.bins[role]
    bin_md.signed.version += 1
    bin_md.sign(repo.signers[tr.BIN_PREFIX], append=False)
    repo.snapshot.signed.meta[f"{role}.json"] = MetaFile(version=bin_md.signed.version)
    repo.snapshot.signed.version += 1
    repo.snapshot.sign(repo.signers[Snapshot.type], append=False)
    repo.timestamp.signed.snapshot_meta = MetaFile(version=repo.snapshot.signed.version)
    repo.timestamp.signed.version += 1
    repo.timestamp.sign(repo.signers[Timestamp.type], append=False)
    written = {
        f"{bin_md.signed.version}.{role}.json": tr.write_bytes(
            md_dir / f"{bin_md.signed.version}.{role}.json", bin_md.to_bytes(tr.SERIALIZER)
        ),
        f"{repo.snapshot.signed.version}.snapshot.json": tr.write_bytes(
            md_dir / f"{repo.snapshot.signed.version}.snapshot.json",
            repo.snapshot.to_bytes(tr.SERIALIZER),
        ),
        "timestamp.json": tr.write_bytes(
            md_dir / "timestamp.json", repo.timestamp.to_bytes(tr.SERIALIZER)
        ),
    }
    return {
        "role": role,
        "total_seconds": round(time.perf_counter() - t0, 4),
        "cpu_seconds": round(time.process_time() - c0, 4),
        "files_written": written,
        "bytes_written": sum(written.values()),
    }


def main() -> int:
    p = argparse.ArgumentParser(description="python-tuf repository authoring baseline")
    p.add_argument("--targets", type=int, default=100_000)
    p.add_argument("--bit-length", type=int, default=8)
    p.add_argument("--seed", default="custody")
    p.add_argument("--expires", default="2036-01-01T00:00:00Z")
    p.add_argument("--work-dir", type=Path, help="parent of the temporary repository (default: system temp)")
    p.add_argument("--keep", action="store_true", help="keep the written repository")
    p.add_argument(
        "--entries-in",
        type=Path,
        help="read the N (name, length, sha256) inputs from these JSON lines instead of generating contents",
    )
    p.add_argument(
        "--entries-out",
        type=Path,
        help="write the N (name, length, sha256) inputs as JSON lines, for custody to take the same inputs",
    )
    a = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="py-authoring-", dir=a.work_dir))
    md_dir = work / "metadata"
    try:
        t0 = time.perf_counter()
        tfs = []
        if a.entries_in:
            with open(a.entries_in) as f:
                for line in f:
                    e = json.loads(line)
                    tfs.append(tr.TargetFile(length=e["length"], hashes=e["hashes"], path=e["name"]))
            a.targets = len(tfs)
        else:
            for i in range(a.targets):
                name = tr.target_name(i)
                tfs.append(tr.target_file_for(name, tr.target_content(a.seed, name)))
        t_hash = time.perf_counter() - t0
        progress("inputs", len(tfs))
        if a.entries_out:
            with open(a.entries_out, "w") as f:
                for tf in tfs:
                    f.write(json.dumps({"name": tf.path, "length": tf.length, "hashes": tf.hashes}))
                    f.write("\n")

        c1 = time.process_time()
        t1 = time.perf_counter()
        repo = tr.new_repo(a.seed, tr.parse_expires(a.expires), a.bit_length)
        for i, tf in enumerate(tfs, 1):
            tr.add_target(repo, tf)
            if i % 100_000 == 0:
                progress("built targets", i)
        t_build = time.perf_counter() - t1
        progress("built targets", len(tfs))

        t2 = time.perf_counter()
        tr.sign_all(repo)
        t_sign = time.perf_counter() - t2
        progress("signed bins", len(repo.bins))

        t3 = time.perf_counter()
        written = tr.write_metadata(repo, md_dir)
        t_write = time.perf_counter() - t3
        progress("written files", len(written))
        create_total = t_build + t_sign + t_write
        create_cpu = time.process_time() - c1

        extra1 = tr.target_name(a.targets)
        extra2 = tr.target_name(a.targets + 1)
        disk = add_one_from_disk(
            md_dir, a.seed, tr.target_file_for(extra1, tr.target_content(a.seed, extra1))
        )
        # The in-memory repo does not know about extra1; give it versions that
        # continue after the on-disk add so file names do not collide.
        mem_role = tr.bin_for(repo, extra2)
        if mem_role == disk["role"]:
            repo.bins[mem_role].signed.version += 1
        repo.snapshot.signed.version += 1
        repo.timestamp.signed.version += 1
        mem = add_one_in_memory(
            repo, md_dir, tr.target_file_for(extra2, tr.target_content(a.seed, extra2))
        )

        result = {
            "bench": "py_repo_authoring",
            "python_tuf": __import__("tuf").__version__,
            "targets": a.targets,
            "bins": len(repo.bins),
            "cpus": os.cpu_count(),
            "create": {
                "generate_and_hash_contents_seconds": round(t_hash, 3),
                "build_seconds": round(t_build, 3),
                "sign_seconds": round(t_sign, 3),
                "write_seconds": round(t_write, 3),
                "total_seconds_excluding_contents": round(create_total, 3),
                "cpu_seconds_excluding_contents": round(create_cpu, 3),
                "files_written": len(written),
                "bytes_written": sum(written.values()),
            },
            "add_one_target_from_disk": disk,
            "add_one_target_in_memory": mem,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
        print(json.dumps(result, indent=1))
    finally:
        if a.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

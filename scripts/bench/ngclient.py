#!/usr/bin/env python3
"""Minimal python-tuf ngclient CLI for the custody benchmarks.

Refreshes top-level metadata, resolves one target (walking delegations, e.g.
TAP 15 hash bins), downloads and verifies it into --target-dir. The metadata
dir must already hold the trusted root.json (like `custody client init`).

Prints one JSON line: {"target": ..., "path": ..., "in_process_seconds": ...}
where in_process_seconds covers Updater construction through download (it
excludes interpreter start-up and imports; the bench measures those too as
part of the wall time). Exit status 1 with a message on any failure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main() -> int:
    p = argparse.ArgumentParser(description="python-tuf ngclient: refresh + download one target")
    p.add_argument("--metadata-dir", required=True, help="local metadata dir holding the trusted root.json")
    p.add_argument("--metadata-url", required=True, help="base URL of the remote metadata")
    p.add_argument("--target-base-url", required=True, help="base URL of the remote targets")
    p.add_argument("--target-dir", required=True, help="where to store the downloaded target")
    p.add_argument("--target-name", required=True, help="target path as listed in targets metadata")
    a = p.parse_args()

    t0 = time.perf_counter()
    from tuf.ngclient import Updater  # noqa: PLC0415 (timed separately below)

    t_import = time.perf_counter() - t0
    t1 = time.perf_counter()
    try:
        updater = Updater(
            metadata_dir=a.metadata_dir,
            metadata_base_url=a.metadata_url,
            target_dir=a.target_dir,
            target_base_url=a.target_base_url,
            bootstrap=None,  # trust the root.json placed in metadata_dir
        )
        updater.refresh()
        info = updater.get_targetinfo(a.target_name)
        if info is None:
            print(f"ngclient: target {a.target_name!r} not found in the repository", file=sys.stderr)
            return 1
        path = updater.download_target(info)
    except Exception as e:  # report any python-tuf failure as a CLI error
        print(f"ngclient: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - t1
    print(
        json.dumps(
            {
                "target": a.target_name,
                "path": path,
                "length": info.length,
                "import_seconds": round(t_import, 6),
                "in_process_seconds": round(elapsed, 6),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

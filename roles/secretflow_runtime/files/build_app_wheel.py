"""Builds the worker app's wheel on the controller and keeps it in the cache
by content; prints {"path": ..., "checksum": ...} as JSON.

The build is reproducible (fixed zip timestamps), so an unchanged source
gives a byte-identical wheel, the same cache path, and no change on the
hosts. Each run builds in a directory of its own and puts the wheel in
place with a rename, so runs side by side (two inventories, two test
scenarios) never see a half-written wheel or remove one another is copying.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE_DATE_EPOCH = "315532800"  # 1980-01-01, the earliest time a zip can hold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="the app's source tree (pyproject.toml)")
    parser.add_argument("--cache", required=True, help="the role's cache directory on the controller")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sfnode-wheel-") as build:
        subprocess.run([sys.executable, "-m", "flit_core.wheel", "--outdir", build], cwd=args.source,
                       env={**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}, check=True,
                       stdout=subprocess.DEVNULL)
        wheel = next(Path(build).glob("sfnode-*.whl"))
        checksum = hashlib.sha256(wheel.read_bytes()).hexdigest()
        target = Path(args.cache) / "app" / checksum[:12] / wheel.name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.parent / f".{wheel.name}.{os.getpid()}"
            shutil.copyfile(wheel, partial)
            partial.chmod(0o644)
            os.replace(partial, target)
    print(json.dumps({"path": str(target), "checksum": checksum}))


if __name__ == "__main__":
    main()

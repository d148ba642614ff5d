"""The worker app's wheel as site.yml builds it on the controller
(roles/secretflow_runtime/files/build_app_wheel.py): reproducible, kept in
the cache under its content, and the same answer when built again."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "roles/secretflow_runtime/files/build_app_wheel.py"


def build(cache: Path) -> dict:
    done = subprocess.run([sys.executable, str(SCRIPT), "--source", str(ROOT), "--cache", str(cache)],
                          capture_output=True, text=True, check=True, timeout=120)
    return json.loads(done.stdout)


def test_the_wheel_is_kept_by_content_and_built_again_byte_for_byte(tmp_path):
    first = build(tmp_path)
    wheel = Path(first["path"])
    assert wheel.parent == tmp_path / "app" / first["checksum"][:12]
    assert wheel.name.startswith("sfnode-") and wheel.suffix == ".whl"
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == first["checksum"]
    assert wheel.stat().st_mode & 0o777 == 0o644
    assert "sfnode/supervise.py" in zipfile.ZipFile(wheel).namelist()
    # a second build of the same source: the same bytes, the same place, nothing left beside it
    assert build(tmp_path) == first
    assert [p.name for p in wheel.parent.iterdir()] == [wheel.name]

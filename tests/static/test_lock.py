"""The lock is what the hosts install: every line pins one wheel by version
and sha256, so a substituted wheel is refused by pip (--require-hashes)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

LOCKS = sorted((Path(__file__).resolve().parents[2] / "roles/secretflow_runtime/files/locks").glob("*.txt"))
LINE = re.compile(r"[a-z0-9-]+==[A-Za-z0-9.+!-]+ --hash=sha256:[0-9a-f]{64}")


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_every_lock_line_pins_a_version_and_a_sha256(lock: Path) -> None:
    lines = [line for line in lock.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert len(lines) > 100
    assert [line for line in lines if not LINE.fullmatch(line)] == []

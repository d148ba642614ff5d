"""Shared fixtures: the node's settings as the tests expect them, and the
journal of a unit printed when an assertion about it fails."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

UNITS = ("secretflow-redis.service", "secretflow-ray.service", "secretflow-worker.service")


@pytest.fixture(scope="session")
def standin() -> dict:
    """The Python version/archive the scenario converged with."""
    cache = Path(os.environ.get("SFF_CACHE", Path.home() / ".cache/secretflow-federation"))
    return yaml.safe_load((cache / "python" / "standin-vars.yml").read_text())


@pytest.fixture()
def journal(host):
    """Call journal(unit) inside an assert message to see why a unit is down."""

    def _journal(unit: str, lines: int = 60) -> str:
        out = host.run(f"journalctl -u {unit} -n {lines} --no-pager")
        status = host.run(f"systemctl status {unit} --no-pager")
        return f"\n--- systemctl status {unit}\n{status.stdout}\n--- journal\n{out.stdout}"

    return _journal

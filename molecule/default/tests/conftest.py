"""Shared fixtures and helpers: the node's settings as the tests expect them,
the journal of a unit printed when an assertion about it fails, units' start
times, and the project's playbooks run against molecule's inventory."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

UNITS = ("secretflow-redis.service", "secretflow-ray.service", "secretflow-worker.service")
ROOT = Path(__file__).resolve().parents[3]
CACHE = Path(os.environ.get("SFF_CACHE", Path.home() / ".cache/secretflow-federation"))


def start_stamps(host) -> dict[str, str]:
    """When each unit last became active (monotonic microseconds)."""
    return {unit: host.check_output(f"systemctl show -p ActiveEnterTimestampMonotonic --value {unit}")
            for unit in UNITS}


def run_playbook(path: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """ansible-playbook PATH (relative to the project) with the scenario's
    inventory and stand-in Python; output without colours."""
    run = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(ROOT / path),
         "-e", f"@{CACHE / 'python' / 'standin-vars.yml'}", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "ANSIBLE_ROLES_PATH": str(ROOT / "roles"), "ANSIBLE_NOCOLOR": "1",
             "ANSIBLE_FORCE_COLOR": "0"},
    )
    run.stdout = re.sub(r"\x1b\[[0-9;]*m", "", run.stdout)
    return run


def run_site(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return run_playbook("site.yml", *args, timeout=timeout)


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

"""Shared fixtures and helpers: the node's settings as the tests expect them,
the journal of a unit printed when an assertion about it fails, and the
project's playbooks run against molecule's inventory. What both scenarios
share (the roles' values, waiting, units' start times) is molecule/shared.py."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from shared import CACHE, container_host, run_playbook  # noqa: E402

NODE_HOST = yaml.safe_load((Path(__file__).resolve().parents[1] / "molecule.yml").read_text())["platforms"][0]["name"]


def run_molecule_playbook(path: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """A playbook of the project against the scenario's inventory."""
    return run_playbook([os.environ["MOLECULE_INVENTORY_FILE"]], path, *args, timeout=timeout)


def run_site(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return run_molecule_playbook("site.yml", *args, timeout=timeout)


@pytest.fixture(scope="session")
def host():
    """The scenario's node, its commands entering the container with nsenter
    (in place of testinfra's ansible backend, an ansible run per command)."""
    return container_host(NODE_HOST)


@pytest.fixture(scope="session")
def standin() -> dict:
    """The Python version/archive the scenario converged with."""
    return yaml.safe_load((CACHE / "python" / "standin-vars.yml").read_text())


@pytest.fixture()
def journal(host):
    """Call journal(unit) inside an assert message to see why a unit is down."""

    def _journal(unit: str, lines: int = 60) -> str:
        out = host.run(f"journalctl -u {unit} -n {lines} --no-pager")
        status = host.run(f"systemctl status {unit} --no-pager")
        return f"\n--- systemctl status {unit}\n{status.stdout}\n--- journal\n{out.stdout}"

    return _journal

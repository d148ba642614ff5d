"""Bad settings are refused by site.yml's preflight with a message naming the
party, the variable, the value and what would be valid.

Runs `ansible-playbook site.yml --tags preflight` against this machine as a
one-party federation: only the read-only checks run (asserts, a df), so
nothing is changed anywhere, and no container is needed.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GOOD = {"ansible_connection": "local", "ansible_become": False,
        "ansible_python_interpreter": sys.executable, "node_ip": "192.0.2.10"}


def preflight(tmp_path: Path, **overrides: object) -> subprocess.CompletedProcess[str]:
    return preflight_parties(tmp_path, {"alice": overrides})


def preflight_parties(tmp_path: Path, parties: dict[str, dict]) -> subprocess.CompletedProcess[str]:
    hosts = {}
    for name, overrides in parties.items():
        party = {**GOOD, **overrides}
        hosts[name] = {k: v for k, v in party.items() if v is not None}
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"federation": {"hosts": hosts}}))
    return subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory), "site.yml",
         "--tags", "preflight"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1"},
    )


def test_a_good_party_passes(tmp_path: Path) -> None:
    result = preflight(tmp_path, redis_password="a" * 32)
    assert result.returncode == 0, result.stdout + result.stderr


CASES = {
    "node_ip missing": ({"node_ip": None}, ["party alice", "node_ip is not set"]),
    "zero CPUs for Ray": ({"ray_head_num_cpus": 0},
                          ["party alice", "ray_head_num_cpus is '0'", "auto", ">= 1"]),
    "object store not a number": ({"ray_head_object_store_memory": "2GB"},
                                  ["party alice", "ray_head_object_store_memory is '2GB'", "number of bytes"]),
    "object store larger than /dev/shm": ({"ray_head_object_store_memory": 10**15},
                                          ["party alice", "1000000000000000 bytes", "/dev/shm"]),
    "more concurrency than port slots": ({"celery_worker_concurrency": 40},
                                         ["party alice", "celery_worker_concurrency is 40", "32 port slots",
                                          "1 to 32"]),
    "short Redis password": ({"redis_password": "short"},
                             ["party alice", "redis_password", "16 characters", "has\n5 characters"]),
    "unknown install source": ({"secretflow_runtime_install_source": "ftp"},
                               ["party alice", "secretflow_runtime_install_source is 'ftp'", "controller, index"]),
    "no Python archive for the architecture": ({"python_archive_checksums": {"riscv64": "0" * 64}},
                                               ["party alice", "python_archive_checksums has no entry",
                                                "riscv64"]),
}


@pytest.mark.parametrize("overrides,expected", CASES.values(), ids=CASES.keys())
def test_bad_setting_is_refused_with_its_message(tmp_path: Path, overrides: dict, expected: list[str]) -> None:
    overrides.setdefault("redis_password", "a" * 32)
    result = preflight(tmp_path, **overrides)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output
    for fragment in expected:
        assert " ".join(fragment.split()) in output, f"{fragment!r} not in:\n{output[-3000:]}"


def test_problems_across_parties_are_reported_together(tmp_path: Path) -> None:
    """Two parties: a duplicate id and a loopback address, both named in one run."""
    secret = {"redis_password": "a" * 32}
    result = preflight_parties(tmp_path, {
        "alice": {**secret, "node_ip": "127.0.0.1"},
        "bob": {**secret, "node_id": "alice", "node_ip": "192.0.2.11"},
    })
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output
    assert "node_ip is 127.0.0.1, a loopback address" in output, output[-3000:]
    assert "node_id 'alice' is used by hosts alice, bob" in output, output[-3000:]

"""Helpers of the federation scenario: run jobs through playbooks/job.yml,
the operator's own submission path, and site.yml / uninstall.yml, against
molecule's inventory. What both scenarios share is molecule/shared.py.

The federation the tests work on changes once each way, and each test asks
for the state it needs:
- ``jobs``: molecule's inventory, alice and bob converged, carol a spare
  host (the outsider of test_10's firewall test, which runs first);
- ``carol_joined`` / ``three_parties``: carol added to the federation group
  by an inventory file of her own, as an operator edits theirs, and
  provisioned by site.yml: once, for the first test that asks, so every
  three-party test also runs on its own;
- carol leaves in test_40 (the last file), through uninstall.yml and site.yml
  with ``jobs`` again.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import shared  # noqa: E402
from shared import NODE, ROOT, playbook_env, run_playbook  # noqa: E402

PARTIES = {"alice": "sff-fed-alice", "bob": "sff-fed-bob", "carol": "sff-fed-carol"}
SFNODE = "/usr/local/bin/sfnode"


def unique_job_id(kind: str) -> str:
    return f"{kind}-{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}".replace("_", "-")


class Jobs:
    """Runs the project's playbooks against fixed inventories: job.yml for jobs, site.yml, upload.yml."""

    def __init__(self, workdir: Path, inventories: list[str]) -> None:
        self.workdir = workdir
        self.inventories = tuple(inventories)

    def inventory_args(self) -> list[str]:
        return [arg for inv in self.inventories for arg in ("-i", inv)]

    def playbook(self, name: str, *args: str, timeout: float = 1800,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """ansible-playbook NAME (site.yml, or playbooks/NAME) with the scenario's extra-vars
        (``env``: more environment, e.g. another stdout callback)."""
        path = name if name == "site.yml" else f"playbooks/{name}"
        return run_playbook(list(self.inventories), path, *args, timeout=timeout, env=env)

    def start(self, spec: dict) -> subprocess.Popen:
        path = self.workdir / f"{spec.get('job_id', 'spec')}-{uuid.uuid4().hex[:4]}.json"
        path.write_text(json.dumps(spec))
        return subprocess.Popen(
            ["ansible-playbook", *self.inventory_args(), str(ROOT / "playbooks" / "job.yml"),
             "-e", f"job_spec={path}"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=playbook_env(ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json"),
        )

    @staticmethod
    def finish(proc: subprocess.Popen, timeout: float = 900) -> "JobRun":
        out, _ = proc.communicate(timeout=timeout)
        return JobRun(proc.returncode, out)

    def run(self, spec: dict, timeout: float = 900) -> "JobRun":
        return self.finish(self.start(spec), timeout)

    def upload(self, host: str, src: Path, dest: str) -> None:
        """Put a file into a party's data directory with playbooks/upload.yml."""
        run = self.playbook("upload.yml", "-l", host, "-e", f"src={src}", "-e", f"dest={dest}", timeout=600)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]


class JobRun:
    """The outcome of one job.yml run: exit code and each party's result."""

    def __init__(self, rc: int, output: str) -> None:
        self.rc = rc
        self.output = output
        self.results: dict[str, dict] = {}
        self.failures: list[str] = []
        try:
            doc = json.loads(output[output.index("{"):])
        except ValueError:
            return
        for play in doc.get("plays", []):
            for task in play.get("tasks", []):
                for host, res in task.get("hosts", {}).items():
                    facts = res.get("ansible_facts", {})
                    if "__job_result" in facts:
                        self.results[facts["__job_result"].get("party", host)] = facts["__job_result"]
                    if res.get("failed") and res.get("msg"):
                        self.failures.append(f"{host}: {res['msg']}")

    def __repr__(self) -> str:
        return f"JobRun(rc={self.rc}, results={json.dumps(self.results, indent=1)}, failures={self.failures})"


@pytest.fixture(scope="session")
def jobs(tmp_path_factory) -> Jobs:
    """The playbooks against molecule's inventory: alice and bob are the federation, carol a spare host."""
    return Jobs(tmp_path_factory.mktemp("specs"), [os.environ["MOLECULE_INVENTORY_FILE"]])


@dataclass(frozen=True)
class Joined:
    """The federation once carol has joined: the playbooks against the
    inventory that says so, and alice's and bob's unit start times from
    before carol's site.yml run."""

    jobs: Jobs
    before: dict[str, dict[str, str]]


@pytest.fixture(scope="session")
def carol_joined(jobs, party_hosts) -> Joined:
    """carol joins as an operator adds a party: an inventory edit, then site.yml."""
    extra = jobs.workdir / "carol-joins.yml"
    extra.write_text(yaml.safe_dump({NODE["node_federation_group"]: {"hosts": {PARTIES["carol"]: {}}}}))
    three = Jobs(jobs.workdir, [*jobs.inventories, str(extra)])
    before = start_stamps({pid: party_hosts[pid] for pid in ("alice", "bob")})
    run = three.playbook("site.yml")
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    return Joined(three, before)


@pytest.fixture(scope="session")
def three_parties(carol_joined) -> Jobs:
    """The playbooks against the federation of alice, bob and carol."""
    return carol_joined.jobs


@pytest.fixture(scope="session")
def party_hosts():
    return {pid: shared.container_host(name) for pid, name in PARTIES.items()}


def start_stamps(hosts: dict) -> dict[str, dict[str, str]]:
    """When each party's units last became active (monotonic microseconds)."""
    return {pid: shared.start_stamps(h) for pid, h in hosts.items()}


def node_ip(host) -> str:
    return host.interface("eth0").addresses[0]


def connects(host, ip: str, port: int, timeout: float = 3) -> bool:
    """Whether a TCP connection from ``host`` to ip:port opens."""
    code = f"import socket; socket.create_connection(('{ip}', {port}), {timeout}).close()"
    return host.run(f"python3 -c \"{code}\"").rc == 0


# Generated ids with intersections known in advance:
#   alice 1..3000, bob 2001..5000, carol 4501..6000
#   alice & bob = 2001..3000 (1000), bob & carol = 4501..5000 (500)
RANGES = {"alice": (1, 3000), "bob": (2001, 5000), "carol": (4501, 6000)}


def upload_psi_input(jobs: Jobs, pid: str, work: Path) -> str:
    """A party's CSV (key column plus another one, rows in descending order)."""
    low, high = RANGES[pid]
    src = work / f"{pid}.csv"
    src.write_text("uid,bucket\n" + "".join(f"id-{i:06d},{i % 7}\n" for i in range(high, low - 1, -1)))
    jobs.upload(PARTIES[pid], src, "psi/ids.csv")
    return "psi/ids.csv"


def psi_spec(a: str, b: str, slot: int, path: str, **params) -> dict:
    return {"job_id": unique_job_id(f"psi-{a}-{b}"), "kind": "psi", "parties": [a, b], "slot": slot,
            "params": {"inputs": {a: {"path": path, "keys": ["uid"]}, b: {"path": path, "keys": ["uid"]}},
                       "receiver": a, "broadcast_result": True, **params}}

"""Helpers of the federation scenario: run jobs through playbooks/job.yml,
the operator's own submission path, and site.yml / uninstall.yml, against
molecule's inventory (plus, once carol has joined, an inventory file that
adds carol to the federation group, as an operator would edit theirs)."""
from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PARTIES = {"alice": "sff-fed-alice", "bob": "sff-fed-bob", "carol": "sff-fed-carol"}
UNITS = ("secretflow-redis.service", "secretflow-ray.service", "secretflow-worker.service")
SFNODE = "/usr/local/bin/sfnode"


def unique_job_id(kind: str) -> str:
    return f"{kind}-{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}".replace("_", "-")


def playbook_env() -> dict[str, str]:
    return {**os.environ, "ANSIBLE_ROLES_PATH": str(ROOT / "roles"), "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0"}


class Jobs:
    """Runs the project's playbooks: job.yml for jobs, site.yml, upload.yml."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.inventories = [os.environ["MOLECULE_INVENTORY_FILE"]]

    def inventory_args(self) -> list[str]:
        return [arg for inv in self.inventories for arg in ("-i", inv)]

    def carol_joins(self) -> None:
        """Put carol into the federation group, as an operator edits the inventory."""
        extra = self.workdir / "carol-joins.yml"
        extra.write_text("federation:\n  hosts:\n    sff-fed-carol: {}\n")
        if str(extra) not in self.inventories:
            self.inventories.append(str(extra))

    def carol_leaves(self) -> None:
        self.inventories = self.inventories[:1]

    def playbook(self, name: str, *args: str, timeout: float = 1800,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """ansible-playbook NAME (site.yml, or playbooks/NAME) with the scenario's extra-vars
        (``env``: more environment, e.g. another stdout callback)."""
        path = ROOT / name if name == "site.yml" else ROOT / "playbooks" / name
        standin = Path(os.environ.get("SFF_CACHE", Path.home() / ".cache/secretflow-federation"))
        return subprocess.run(
            ["ansible-playbook", *self.inventory_args(), str(path),
             "-e", f"@{standin / 'python' / 'standin-vars.yml'}", *args],
            cwd=ROOT, capture_output=True, text=True, timeout=timeout, env={**playbook_env(), **(env or {})})

    def start(self, spec: dict) -> subprocess.Popen:
        path = self.workdir / f"{spec.get('job_id', 'spec')}-{uuid.uuid4().hex[:4]}.json"
        path.write_text(json.dumps(spec))
        return subprocess.Popen(
            ["ansible-playbook", *self.inventory_args(), str(ROOT / "playbooks" / "job.yml"),
             "-e", f"job_spec={path}"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
                 "ANSIBLE_ROLES_PATH": str(ROOT / "roles")},
        )

    @staticmethod
    def finish(proc: subprocess.Popen, timeout: float = 900) -> "JobRun":
        out, _ = proc.communicate(timeout=timeout)
        return JobRun(proc.returncode, out)

    def run(self, spec: dict, timeout: float = 900) -> "JobRun":
        return self.finish(self.start(spec), timeout)

    def upload(self, host: str, src: Path, dest: str) -> None:
        """Put a file into a party's data directory with playbooks/upload.yml."""
        subprocess.run(
            ["ansible-playbook", *self.inventory_args(), str(ROOT / "playbooks" / "upload.yml"),
             "-l", host, "-e", f"src={src}", "-e", f"dest={dest}"],
            cwd=ROOT, check=True, capture_output=True, text=True,
            env={**os.environ, "ANSIBLE_ROLES_PATH": str(ROOT / "roles")},
        )


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
    return Jobs(tmp_path_factory.mktemp("specs"))


@pytest.fixture(scope="session")
def party_hosts():
    import testinfra

    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    return {pid: testinfra.get_host(f"ansible://{name}?ansible_inventory={inventory}")
            for pid, name in PARTIES.items()}


def start_stamps(hosts: dict) -> dict[str, dict[str, str]]:
    """When each party's units last became active (monotonic microseconds)."""
    return {pid: {u: h.check_output(f"systemctl show -p ActiveEnterTimestampMonotonic --value {u}")
                  for u in UNITS}
            for pid, h in hosts.items()}


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

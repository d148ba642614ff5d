"""Helpers of the federation scenario: run jobs through playbooks/job.yml,
the operator's own submission path, against molecule's inventory."""
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


def unique_job_id(kind: str) -> str:
    return f"{kind}-{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}".replace("_", "-")


class Jobs:
    """Submits specs with ansible-playbook playbooks/job.yml."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.inventory = os.environ["MOLECULE_INVENTORY_FILE"]

    def start(self, spec: dict) -> subprocess.Popen:
        path = self.workdir / f"{spec.get('job_id', 'spec')}-{uuid.uuid4().hex[:4]}.json"
        path.write_text(json.dumps(spec))
        return subprocess.Popen(
            ["ansible-playbook", "-i", self.inventory, str(ROOT / "playbooks" / "job.yml"),
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
            ["ansible-playbook", "-i", self.inventory, str(ROOT / "playbooks" / "upload.yml"),
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

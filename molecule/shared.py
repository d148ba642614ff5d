"""What the tests of both scenarios share (each conftest puts this directory
on sys.path): the project's values, read from the roles so that the tests
move with them, the project's playbooks run against molecule's inventory,
and one way to wait for something."""
from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import yaml

ROOT = Path(__file__).resolve().parents[1]
# Set by scripts/env.sh, as molecule.yml needs it.
CACHE = Path(os.environ["SFF_CACHE"])
T = TypeVar("T")


def role_vars(role: str) -> dict:
    """A role's defaults and fixed vars as written (templated values stay strings)."""
    found: dict = {}
    for part in ("defaults", "vars"):
        path = ROOT / "roles" / role / part / "main.yml"
        if path.exists():
            found.update(yaml.safe_load(path.read_text()) or {})
    return found


NODE, REDIS, RAY_HEAD, WORKER, FIREWALL, CHANNEL = (role_vars(role) for role in
                                                    ("node", "redis", "ray_head", "celery_worker", "firewall",
                                                     "job_channel"))
# A node's units in the order they start: the broker, the Ray head, the worker.
UNITS = (REDIS["redis_unit"], RAY_HEAD["ray_head_unit"], WORKER["celery_worker_unit"])
REDIS_UNIT, RAY_UNIT, WORKER_UNIT = UNITS
# Redis as Debian's redis user, the Ray head as its own user (it must not read
# the broker password), the worker as the service user.
# The job channel, which peers call: not part of a node's restart order.
CHANNEL_UNIT = CHANNEL["job_channel_unit"]
UNIT_USERS = {REDIS_UNIT: REDIS["redis_user"], RAY_UNIT: NODE["node_ray_user"], WORKER_UNIT: NODE["node_user"],
              CHANNEL_UNIT: NODE["node_user"]}
ENV_FILE = f"{NODE['node_config_dir']}/node.env"
JOBS_DIR = f"{NODE['node_data_dir']}/jobs"
VENV = f"{NODE['node_install_dir']}/venv"  # secretflow_runtime_venv


def wait_for(predicate: Callable[[], T], seconds: float, what: str | Callable[[], str], step: float = 1.0) -> T:
    """Ask predicate() every step seconds until it answers something true, and
    return that; after seconds, fail naming what (a callable is asked only
    then, say for a journal)."""
    deadline = time.monotonic() + seconds
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:.0f} s: {what() if callable(what) else what}")
        time.sleep(step)
    return value


def job_process_alive(host, job_id: str) -> bool:
    """Whether the runner of ``job_id`` still runs on ``host``: the process its status file
    names, by pid and start time (a standby runner's command line does not name its job)."""
    status = host.run(f"cat {JOBS_DIR}/{job_id}/status.json")
    if status.rc != 0:
        return False
    recorded = json.loads(status.stdout)
    pid, started = recorded.get("pid"), recorded.get("pid_start")
    stat = host.run(f"cat /proc/{pid}/stat")
    if not isinstance(pid, int) or stat.rc != 0:
        return False
    fields = stat.stdout.rpartition(")")[2].split()
    zombie = fields[0] == "Z"
    return not zombie and int(fields[19]) == started


def job_phase(host, job_id: str) -> str | None:
    """The phase a job's runner on ``host`` last recorded (None: no status yet)."""
    out = host.run(f"cat {JOBS_DIR}/{job_id}/status.json")
    return json.loads(out.stdout).get("phase") if out.rc == 0 else None


def actor_processes(host) -> list[str]:
    """Ray worker processes running an actor or task (idle workers excluded)."""
    out = host.check_output("ps -eo args")
    return [line for line in out.splitlines() if line.startswith("ray::") and not line.startswith("ray::IDLE")]


def start_stamps(host, units: tuple[str, ...] = UNITS) -> dict[str, str]:
    """When each unit last became active (monotonic microseconds)."""
    return {unit: host.check_output(f"systemctl show -p ActiveEnterTimestampMonotonic --value {unit}")
            for unit in units}


def _door():
    """plugins/connection/podman_nsenter.py, the playbooks' connection to the test containers."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("podman_nsenter", ROOT / "plugins/connection/podman_nsenter.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def container_host(name: str):
    """A testinfra host for a running test container, whose commands enter it
    through the playbooks' door (a few ms) rather than podman exec (0.15-0.4 s
    each)."""
    import testinfra.host
    from testinfra.backend.podman import PodmanBackend

    door = _door()

    class NsenterBackend(PodmanBackend):
        NAME = "podman"
        pid: int | None = None
        container_id = ""

        def _container_pid(self) -> int:
            """The container's PID 1, found again once the container restarted (the reboot test)."""
            if self.pid is not None:
                with contextlib.suppress(OSError):
                    if self.container_id in Path(f"/proc/{self.pid}/cgroup").read_text():
                        return self.pid
            self.pid, self.container_id = door.container_pid(self.name)
            return self.pid

        def run(self, command: str, *args: str, **kwargs):
            cmd = self.get_command(command, *args)
            run = subprocess.run(door.nsenter_command(self._container_pid(), ["/bin/sh", "-c", cmd]),
                                 stdin=subprocess.DEVNULL, capture_output=True, check=False)
            return self.result(run.returncode, self.encode(cmd), run.stdout, run.stderr)

    return testinfra.host.Host(NsenterBackend(name))


def playbook_env(**more: str) -> dict[str, str]:
    return {**os.environ, "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
            "ANSIBLE_CONNECTION_PLUGINS": str(ROOT / "plugins" / "connection"), "ANSIBLE_PIPELINING": "true",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0", **more}


def run_playbook(inventories: list[str], path: str, *args: str, timeout: float = 1800,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """ansible-playbook PATH (relative to the project) against the inventories,
    with the stand-in Python's extra-vars; output without colours."""
    run = subprocess.run(
        ["ansible-playbook", *[arg for inventory in inventories for arg in ("-i", inventory)], str(ROOT / path),
         "-e", f"@{CACHE / 'python' / 'standin-vars.yml'}", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=playbook_env(**(env or {})))
    run.stdout = re.sub(r"\x1b\[[0-9;]*m", "", run.stdout)
    return run

"""Provisioning times: a fresh party against a bare install, and a no-op rerun.

On podman containers of its own (network sff-bench-provision, removed at the
end), with the wheelhouse of the lock mounted read-only as the federation
test scenario mounts it:

  bare install   a fresh host from the systemd test image: the stand-in
                 interpreter unpacked, a venv, and pip installing the lock
                 from the wheelhouse (--no-index --require-hashes), as the
                 secretflow_runtime role does, by hand
  fresh party    another fresh host from the same image: site.yml for it
                 alone (Debian packages, interpreter, venv, Redis, Ray head,
                 worker, TLS, firewall), installing from the same wheelhouse
  no-op rerun    N parties (default 3) on hosts from the runtime image,
                 provisioned once by site.yml, then site.yml again: nothing
                 to change; with the per-task profile, the slowest tasks

  .venv/bin/python scripts/benchmark_provision.py [--parties N] [--skip-fresh] [--json FILE]

It prints figures and asserts nothing about them; the exit code is 1 when a
step fails (the output names it). See docs/benchmark.md.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("SFF_CACHE", Path.home() / ".cache" / "secretflow-federation"))
BASE_IMAGE = "localhost/secretflow-federation/debian12-systemd:latest"
RUNTIME_IMAGE = "localhost/secretflow-federation/debian12-runtime:latest"
NETWORK = "sff-bench-provision"
PREFIX = "sff-bench-"
LOCK = ROOT / "roles/secretflow_runtime/files/locks/cp310-x86_64.txt"
WHEELHOUSES = "/srv/wheelhouses"


class StepFailed(Exception):
    pass


def env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(ROOT / "scripts/containers.conf"),
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}


def run(argv: list[str], what: str, timeout: float = 3600, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, env=env(), timeout=timeout, check=False,
                          **kwargs)
    if done.returncode != 0:
        raise StepFailed(f"{what} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    return done


def start_host(name: str, image: str) -> None:
    run(["podman", "run", "-d", "--name", name, "--network", NETWORK, "--systemd=always",
         "--shm-size=2g", "--cap-add=NET_ADMIN", "-v", f"{CACHE}/wheelhouse:{WHEELHOUSES}:ro",
         image, "/sbin/init"], f"starting {name}")
    for _ in range(60):
        state = subprocess.run(["podman", "exec", name, "systemctl", "is-system-running"], env=env(),
                               capture_output=True, text=True, check=False).stdout.strip()
        if state in ("running", "degraded"):
            return
        time.sleep(1)
    raise StepFailed(f"{name}: systemd did not come up")


def remove_hosts() -> None:
    names = subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}}"], env=env(), capture_output=True,
                           text=True, check=False).stdout.split()
    for name in names:
        if name.startswith(PREFIX):
            subprocess.run(["podman", "rm", "-f", "-t", "5", name], env=env(), capture_output=True, check=False)


def standin() -> dict[str, Any]:
    return yaml.safe_load((CACHE / "python" / "standin-vars.yml").read_text())


def wheelhouse_name() -> str:
    """The roles' name for the lock's wheelhouse (secretflow_runtime vars: <lock name>-<lock id>)."""
    lock_id = hashlib.sha256(LOCK.read_text().rstrip("\n").encode()).hexdigest()[:12]
    found = CACHE / "wheelhouse" / f"{LOCK.stem}-{lock_id}"
    if not found.is_dir():
        raise StepFailed(f"no wheelhouse {found}: run ansible-playbook playbooks/wheelhouse.yml first")
    return found.name


def bare_install(name: str) -> float:
    """The interpreter, a venv and the lock, by hand, timed from the first command."""
    vars_ = standin()
    start_host(name, BASE_IMAGE)
    run(["podman", "cp", vars_["python_archive_local_path"], f"{name}:/tmp/python.tar.gz"], "copying the archive")
    run(["podman", "cp", str(LOCK), f"{name}:/tmp/lock.txt"], "copying the lock")
    script = (
        "set -e; mkdir -p /opt/bare/python; tar -xzf /tmp/python.tar.gz -C /opt/bare/python --strip-components=1;"
        " /opt/bare/python/bin/python3 -m venv /opt/bare/venv;"
        " /opt/bare/venv/bin/pip install -q --no-cache-dir --require-hashes --no-deps --no-index"
        f" --find-links {WHEELHOUSES}/{wheelhouse_name()} -r /tmp/lock.txt;"
        " /opt/bare/venv/bin/pip check >/dev/null")
    began = time.monotonic()
    run(["podman", "exec", name, "sh", "-c", script], "the bare install")
    return time.monotonic() - began


def inventory(workdir: Path, hosts: dict[str, str]) -> Path:
    """One inventory of the given parties (container -> party id), installing from the wheelhouse."""
    path = workdir / "hosts.yml"
    path.write_text(yaml.safe_dump({"federation": {
        "hosts": {host: {"node_id": party} for host, party in hosts.items()},
        "vars": {"ansible_connection": "podman_nsenter",
                 "node_ip": "{{ ansible_facts['default_ipv4']['address'] }}",
                 "redis_password_dir": str(workdir / "secrets"),
                 "secretflow_runtime_install_source": "index",
                 "secretflow_runtime_pip_no_index": True,
                 "secretflow_runtime_pip_find_links": [f"{WHEELHOUSES}/{wheelhouse_name()}"]}}}))
    return path


def site(hosts_file: Path, log: Path, profile: bool = False) -> float:
    extra = ({"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks", "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "all"}
             if profile else {})
    began = time.monotonic()
    done = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(hosts_file), "site.yml",
                           "-e", f"@{CACHE / 'python' / 'standin-vars.yml'}"], cwd=ROOT, capture_output=True,
                          text=True, env={**env(), **extra}, timeout=3600, check=False)
    seconds = time.monotonic() - began
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise StepFailed(f"site.yml failed ({done.returncode}), output in {log}:\n{done.stdout[-3000:]}")
    return seconds


def recap(log: Path) -> dict[str, dict[str, int]]:
    return {m[1]: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m[2])}
            for m in re.finditer(r"^(\S+)\s+: (ok=.*)$", log.read_text(), re.M)}


def slowest_tasks(log: Path, count: int = 10) -> list[tuple[str, float]]:
    """The profile's summary lines: 'role : task ---- 1.23s'."""
    text = log.read_text()
    summary = text[text.find("TASKS RECAP"):]
    found = re.findall(r"^(.+?) -{3,} (\d+\.\d+)s$", summary, re.M)
    return [(name.strip(), float(seconds)) for name, seconds in found[:count]]


def cpu_idle(seconds: float = 5.0) -> float:
    """The share of this machine's CPU time that was idle over the next ``seconds``."""
    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, all
    idle0, total0 = sample()
    time.sleep(seconds)
    idle1, total1 = sample()
    return (idle1 - idle0) / max(1, total1 - total0)


def settle(limit: float = 240.0, idle: float = 0.9) -> float:
    """Wait until the new nodes are quiet (their Ray heads' warm workers and the workers'
    standby runners import SecretFlow after a start), as nodes are between runs: the CPUs
    at least ``idle`` idle over 5 s, for at most ``limit`` s. The seconds waited."""
    began = time.monotonic()
    while time.monotonic() - began < limit and cpu_idle() < idle:
        pass
    return round(time.monotonic() - began, 1)


def seconds_by_role(log: Path) -> list[tuple[str, float]]:
    """The profile's task times summed by role ('-' for the play's own tasks), largest first."""
    totals: dict[str, float] = {}
    for name, seconds in slowest_tasks(log, count=10_000):
        role = name.split(" : ", 1)[0] if " : " in name else "-"
        totals[role] = totals.get(role, 0.0) + seconds
    return sorted(((role, round(total, 1)) for role, total in totals.items()), key=lambda item: -item[1])


def task_count(log: Path) -> int:
    return len(re.findall(r"^(TASK|RUNNING HANDLER) \[", log.read_text(), re.M))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", type=int, default=3, help="parties of the no-op rerun (default 3)")
    parser.add_argument("--skip-fresh", action="store_true", help="only the no-op rerun")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=False).stdout.strip()
    figures: dict[str, Any] = {"commit": commit, "parties": args.parties}
    workdir = Path(tempfile.mkdtemp(prefix="sff-bench-provision-"))
    remove_hosts()
    subprocess.run(["podman", "network", "rm", "-f", NETWORK], env=env(), capture_output=True, check=False)
    run(["podman", "network", "create", NETWORK], "creating the network")
    try:
        if not args.skip_fresh:
            figures["bare_install_seconds"] = round(bare_install(f"{PREFIX}bare"), 1)
            print(f"bare install (interpreter, venv, lock from the wheelhouse): {figures['bare_install_seconds']} s",
                  flush=True)
            remove_hosts()
            fresh = workdir / "fresh"
            fresh.mkdir()
            start_host(f"{PREFIX}fresh", BASE_IMAGE)
            figures["fresh_party_seconds"] = round(
                site(inventory(fresh, {f"{PREFIX}fresh": "fresh"}), fresh / "site.log", profile=True), 1)
            figures["fresh_ratio"] = round(figures["fresh_party_seconds"] / figures["bare_install_seconds"], 2)
            figures["fresh_slowest"] = slowest_tasks(fresh / "site.log", count=25)
            figures["fresh_by_role"] = seconds_by_role(fresh / "site.log")
            figures["fresh_tasks"] = task_count(fresh / "site.log")
            print(f"fresh party (site.yml on a fresh host): {figures['fresh_party_seconds']} s, "
                  f"{figures['fresh_ratio']} x the bare install (target <= 1.5)", flush=True)
            print(f"  {figures['fresh_tasks']} tasks; by role: "
                  + ", ".join(f"{role} {total} s" for role, total in figures["fresh_by_role"]))
            for name, seconds in figures["fresh_slowest"]:
                print(f"  {seconds:6.2f} s  {name}")
            remove_hosts()
        hosts = {f"{PREFIX}p{i}": f"p{i}" for i in range(1, args.parties + 1)}
        for name in hosts:
            start_host(name, RUNTIME_IMAGE)
        federation = workdir / "noop"
        federation.mkdir()
        hosts_file = inventory(federation, hosts)
        figures["first_run_seconds"] = round(site(hosts_file, federation / "first.log"), 1)
        print(f"first site.yml on {args.parties} parties from the runtime image: {figures['first_run_seconds']} s",
              flush=True)
        figures["settled_seconds"] = settle()
        print(f"settled after {figures['settled_seconds']} s (CPUs at least 90% idle over 5 s)", flush=True)
        log = federation / "noop.log"
        figures["noop_seconds"] = round(site(hosts_file, log, profile=True), 1)
        figures["noop_recap"] = recap(log)
        figures["noop_tasks"] = task_count(log)
        figures["noop_slowest"] = slowest_tasks(log)
        figures["noop_by_role"] = seconds_by_role(log)
        changed = {host: r.get("changed") for host, r in figures["noop_recap"].items()}
        print(f"no-op site.yml on {args.parties} parties: {figures['noop_seconds']} s (target <= 30), "
              f"{figures['noop_tasks']} tasks, changed: {changed}")
        print("  by role: " + ", ".join(f"{role} {total} s" for role, total in figures["noop_by_role"]))
        for name, seconds in figures["noop_slowest"]:
            print(f"  {seconds:6.2f} s  {name}")
    except StepFailed as exc:
        print(f"benchmark_provision: {exc}", file=sys.stderr)
        return 1
    finally:
        remove_hosts()
        subprocess.run(["podman", "network", "rm", "-f", NETWORK], env=env(), capture_output=True, check=False)
        # the hosts' broker passwords go with the hosts; the playbooks' output stays
        for secrets in workdir.glob("*/secrets"):
            shutil.rmtree(secrets, ignore_errors=True)
    print(f"benchmark_provision: the playbooks' output is in {workdir}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

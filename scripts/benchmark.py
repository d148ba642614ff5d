"""Platform overhead: the same SecretFlow jobs through sfnode and as bare scripts.

Runs against the two-party demo federation of ``scripts/demo.sh up`` (podman
containers sff-demo-alice and sff-demo-bob) and measures, side by side:

  trivial  spu_sum (alice 3 + bob 4 = 7, SPU SEMI2K FM128)
  psi      PSI RR22 on N ids per party, N/2 of them shared

each a) through the platform (``sfnode submit SPEC`` started on both parties
at once: broker, Celery worker, supervised runner process), b) as a bare
SecretFlow script started by hand on both parties at once, with the same
``sf.init``/``sf.SPU`` arguments that src/sfnode/sfargs.py builds, on another
port slot, and, when the nodes have mutual TLS, c) as that bare script with
TLS off on both parties ("bare no-tls": no ``tls_config``, no SPU
``tls_opts``), for what TLS costs. A bare run with TLS writes the job's
trust bundle (the other parties' certificates, as the supervisor makes it)
into its work dir first. The wall time of one run is from its start until
both parties have returned. Runs are sequential and alternate
platform/bare/bare no-tls within each repetition.

  .venv/bin/python scripts/benchmark.py [--keys N] [--repeat R] [--json FILE] [--skip-psi]
                                        [--skip-no-tls]

It prints figures and asserts nothing about them: the exit code is 1 only if
a job fails or a result is wrong (sum != 7, intersection != N/2), 2 if the
federation cannot be reached. See docs/benchmark.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shlex
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml

from sfnode.config import DRIVER_ENVIRONMENT, NodeConfig, parse_env_text
from sfnode.federation import Federation, parse_federation
from sfnode.jobdir import WORKDIR_UMASK
from sfnode.jobspec import JobSpec, PartySpec
from sfnode.sfargs import JobContext, sf_init_kwargs, spu_cluster_def, spu_link_desc
from sfnode.supervise import write_trust_bundle

ROOT = Path(__file__).resolve().parents[1]
CONTAINERS_CONF = ROOT / "scripts" / "containers.conf"
PARTIES = ("alice", "bob")
CONTAINER_PREFIX = "sff-demo-"
# The demo provisions with the node role's defaults: paths and users from there.
NODE_DEFAULTS = yaml.safe_load((ROOT / "roles" / "node" / "defaults" / "main.yml").read_text())
NODE_ENV = f"{NODE_DEFAULTS['node_config_dir']}/node.env"
FEDERATION_FILE = f"{NODE_DEFAULTS['node_config_dir']}/federation.json"
VENV_PYTHON = f"{NODE_DEFAULTS['node_install_dir']}/venv/bin/python"
NODE_USER, RAY_USER = NODE_DEFAULTS["node_user"], NODE_DEFAULTS["node_ray_user"]
NODE_HOME = NODE_DEFAULTS["node_data_dir"]
FIREWALL_TABLE = yaml.safe_load((ROOT / "roles" / "firewall" / "defaults" / "main.yml").read_text())[
    "firewall_table"]
# The comment of the rule that lets the bare no-tls runs' clear text through the firewall
# (which takes only TLS on the party ports of a TLS node) for as long as they run.
CLEAR_TEXT_RULE = "benchmark: bare no-tls runs"
SPEC_DIR = "/tmp/sff-bench"  # inside the containers: the platform runs' spec files
# inside the containers: the bare runs' outputs, where the Ray head's actors may write
BARE_DIR = f"{NODE_HOME}/jobs/bench-by-hand"
DATA_SUBDIR = "bench"  # under DATA_DIR: the PSI inputs
PLATFORM_SLOT = 0
SUM_VALUES = {"alice": 3, "bob": 4}
PSI_RECEIVER = "alice"
PSI_PROTOCOL = "PROTOCOL_RR22"
# platform/bare, upper bounds: the platform's standing node pays a job's setup in advance
TARGETS = {"trivial": 0.45, "psi": 0.75}
SECONDS_TARGETS = {"trivial platform": 8.0}  # median wall seconds, upper bounds
OVERHEAD_TARGET = 0.3  # seconds: submit to runner plus result to submitter, less podman exec
TLS_TARGETS = {"psi": 1.10}  # bare with TLS / bare without, upper bounds (trivial: none)
NO_TLS = "no-tls"  # the bare runs with TLS off on both parties: "LABEL bare no-tls"
MEASUREMENTS = ("trivial platform", "trivial bare", f"trivial bare {NO_TLS}",
                "psi platform", "psi bare", f"psi bare {NO_TLS}")
# How much longer than the job deadline a run may take before it is abandoned.
RUN_MARGIN_SECONDS = 180
RESULT_MARK = "BENCH_RESULT "
PHASES = ("import", "init", "run", "shutdown")

# The bare job: its own file, run inside the containers with the node venv's Python.
BY_HAND = ROOT / "scripts" / "by_hand.py"


class BenchError(Exception):
    """A job failed or a result is wrong."""


class SetupError(Exception):
    """The federation cannot be reached or is not what the benchmark expects."""


@dataclass(frozen=True)
class Bench:
    """The demo federation as the worker app reads it: each party's env file and the
    federation file, parsed by sfnode itself."""

    configs: dict[str, NodeConfig]
    federation: Federation

    @staticmethod
    def container(party: str) -> str:
        return CONTAINER_PREFIX + party

    @property
    def bare_slot(self) -> int:
        return self.federation.slots(PARTIES) - 1

    @property
    def deadline(self) -> int:
        return max(c.job_deadline_seconds for c in self.configs.values())

    @property
    def tls(self) -> bool:
        """Whether the parties run with mutual TLS (all of them: ``load_bench`` checks)."""
        return all(c.tls_enabled for c in self.configs.values())

    def context(self, party: str, kind: str, job_name: str, slot: int,
                tls: bool = True) -> JobContext:
        """The job as the runner would see it on ``party`` (the by-hand run's arguments);
        ``tls`` false: as on a node without TLS (no certificate, no key)."""
        parties = tuple(PartySpec(p.id, p.ip, *p.ports(slot))
                        for p in (self.federation.party(pid) for pid in PARTIES))
        spec = JobSpec(job_id=job_name, kind=kind, slot=slot, deadline_seconds=self.deadline,
                       parties=parties)
        config = self.configs[party]
        if not tls:
            config = replace(config, tls_cert=None, tls_key=None)
        return JobContext(spec, config, Path(BARE_DIR) / job_name)


@dataclass
class Run:
    measurement: str
    rep: int
    job_id: str
    seconds: float
    parties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Finished:
    party: str
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    # epoch seconds (the containers share this machine's clock): when the command was started
    # and when it returned, to set against the runner's own phase marks
    started_at: float = 0.0
    ended_at: float = 0.0


# --- podman ------------------------------------------------------------------------------


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(args: Sequence[str], *, input_text: str | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], input=input_text, capture_output=True, text=True,
                          env=podman_env(), timeout=timeout, check=False)


def podman_ok(args: Sequence[str], *, input_text: str | None = None,
              timeout: float = 120) -> str:
    proc = podman(args, input_text=input_text, timeout=timeout)
    if proc.returncode != 0:
        raise SetupError(f"podman {shlex.join(args)} failed ({proc.returncode}): "
                         f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def exec_root(container: str, command: Sequence[str], input_text: str | None = None) -> str:
    flags = ["-i"] if input_text is not None else []
    return podman_ok(["exec", *flags, container, *command], input_text=input_text)


# --- the federation ----------------------------------------------------------------------


def check_running(container: str) -> None:
    state = podman(["container", "inspect", "-f", "{{.State.Running}}", container])
    if state.returncode != 0 or state.stdout.strip() != "true":
        raise SetupError(f"container {container} is not running; start the demo federation "
                         "first: scripts/demo.sh up")


def load_bench() -> Bench:
    configs = {}
    for party in PARTIES:
        container = Bench.container(party)
        check_running(container)
        env_text = exec_root(container, ["cat", NODE_ENV])
        configs[party] = NodeConfig.from_mapping(parse_env_text(env_text),
                                                 source=f"{container}:{NODE_ENV}")
    federation_text = exec_root(Bench.container(PARTIES[0]), ["cat", FEDERATION_FILE])
    federation = parse_federation(json.loads(federation_text), FEDERATION_FILE)
    missing = [p for p in PARTIES if p not in federation]
    if missing:
        raise SetupError(f"{FEDERATION_FILE} has no party {', '.join(missing)}")
    bench = Bench(configs, federation)
    if bench.bare_slot == PLATFORM_SLOT:
        raise SetupError("the parties have a single port slot: the bare runs need a second one")
    with_tls = [p for p, c in configs.items() if c.tls_enabled]
    if with_tls and not bench.tls:
        raise SetupError(f"TLS is on only on {', '.join(with_tls)} ({NODE_ENV}: TLS_CERT, "
                         "TLS_KEY): a job's parties all use TLS or none does")
    return bench


def psi_input(keys: int) -> str:
    return f"{DATA_SUBDIR}/ids-{keys}.csv"


def trust_bundle(ctx: JobContext, federation: Federation) -> dict[str, Any] | None:
    """The job's trust bundle for by_hand.py to write into its work dir before ``sf.init``
    (None: the job runs without TLS): its path (the ``ca_cert`` of ``tls_files``), and the
    text and mode that the supervisor's own ``write_trust_bundle`` gives it, made here in a
    scratch dir and read back."""
    if not ctx.config.tls_enabled:
        return None
    with tempfile.TemporaryDirectory(prefix="sff-bench-") as tmp:
        try:
            made = write_trust_bundle(ctx.spec, ctx.config, federation, Path(tmp))
        except (KeyError, ValueError) as exc:  # a peer absent, or without a certificate
            raise SetupError(f"no trust bundle for party {ctx.self_id} in "
                             f"{FEDERATION_FILE}: {exc}") from None
        return {"path": str(ctx.trust_bundle), "mode": stat.S_IMODE(made.stat().st_mode),
                "text": made.read_text(encoding="utf-8")}


def bare_config(fed: Bench, party: str, kind: str, job_name: str, keys: int,
                tls: bool = True) -> dict[str, Any]:
    ctx = fed.context(party, kind, job_name, fed.bare_slot, tls)
    config: dict[str, Any] = {
        "kind": kind,
        "self": party,
        "ids": list(PARTIES),
        "deadline": fed.deadline,
        # made as the supervisor makes a job's work dir (the group's bits, setgid inherited)
        "workdir": {"path": str(ctx.workdir), "umask": WORKDIR_UMASK},
        "trust_bundle": trust_bundle(ctx, fed.federation),
        "init": sf_init_kwargs(ctx),
        "spu": spu_cluster_def(ctx, "SEMI2K"),
        "link_desc": spu_link_desc(ctx),
    }
    if kind == "spu_sum":
        config["value"] = SUM_VALUES[party]
    else:
        config["psi"] = {
            "keys": {p: ["id"] for p in PARTIES},
            "input_path": {p: f"{fed.configs[p].data_dir}/{psi_input(keys)}" for p in PARTIES},
            "output_path": {p: str(ctx.workdir / "psi_output.csv") for p in PARTIES},
            "receiver": PSI_RECEIVER,
            "table_keys_duplicated": {p: False for p in PARTIES},
            "broadcast_result": True,
            "protocol": PSI_PROTOCOL,
        }
    return config


def bare_command(fed: Bench, party: str, kind: str, job_name: str, keys: int,
                 tls: bool = True) -> list[str]:
    return by_hand_command(party, bare_config(fed, party, kind, job_name, keys, tls))


def by_hand_command(party: str, config: dict[str, Any]) -> list[str]:
    """by_hand.py with ``config`` on ``party``, as the service user, with a driver's
    environment (the runner's) and no Ray address of the node's."""
    return ["podman", "exec", "-u", NODE_USER, "-w", NODE_HOME, Bench.container(party),
            "env", "-u", "RAY_ADDRESS", f"HOME={NODE_HOME}",
            *(f"{key}={value}" for key, value in DRIVER_ENVIRONMENT.items()),
            VENV_PYTHON, "-c", BY_HAND.read_text(), json.dumps(config)]


# --- the platform's job specs ------------------------------------------------------------


def platform_spec(kind: str, job_id: str, keys: int) -> dict[str, Any]:
    if kind == "spu_sum":
        params: dict[str, Any] = {"values": dict(SUM_VALUES), "protocol": "SEMI2K"}
    else:
        params = {"inputs": {p: {"path": psi_input(keys), "keys": ["id"]} for p in PARTIES},
                  "receiver": PSI_RECEIVER, "protocol": PSI_PROTOCOL, "broadcast_result": True}
    return {"job_id": job_id, "kind": kind, "parties": list(PARTIES), "slot": PLATFORM_SLOT,
            "params": params}


def write_spec(fed: Bench, spec: dict[str, Any]) -> str:
    path = f"{SPEC_DIR}/{spec['job_id']}.json"
    for party in PARTIES:
        exec_root(Bench.container(party), ["sh", "-c", f"mkdir -p {SPEC_DIR} && cat > {path}"],
                  input_text=json.dumps(spec))
    return path


def submit_command(party: str, spec_path: str) -> list[str]:
    return ["podman", "exec", CONTAINER_PREFIX + party, "sfnode", "submit", spec_path]


# --- running both parties at once ----------------------------------------------------------


def run_both(commands: dict[str, list[str]], timeout: float) -> tuple[float, dict[str, Finished]]:
    """Start every party's command at once; the wall time until the last one returns."""
    start, started_at = time.monotonic(), time.time()

    def one(party: str) -> Finished:
        try:
            proc = subprocess.run(commands[party], capture_output=True, text=True,
                                  env=podman_env(), timeout=timeout, stdin=subprocess.DEVNULL,
                                  check=False)
            code, out, err = proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as exc:
            code, out, err = None, _text(exc.stdout), _text(exc.stderr)
            err += f"\n(abandoned after {timeout:.0f} s)"
        return Finished(party, code, out, err, round(time.monotonic() - start, 3),
                        started_at, time.time())

    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        finished = list(pool.map(one, commands))
    wall = max(f.seconds for f in finished)
    return round(wall, 3), {f.party: f for f in finished}


def _text(data: str | bytes | None) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data or ""


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def failure(what: str, done: Finished, reason: str) -> BenchError:
    return BenchError(f"{what} on {done.party}: {reason} (exit {done.returncode})\n"
                      f"--- stdout (end) ---\n{tail(done.stdout)}\n"
                      f"--- stderr (end) ---\n{tail(done.stderr)}")


# --- checking the answers ------------------------------------------------------------------


def check_value(what: str, done: Finished, result: dict[str, Any], kind: str,
                keys: int) -> None:
    if kind == "spu_sum":
        expected = sum(SUM_VALUES.values())
        if result.get("sum") != expected:
            raise failure(what, done, f"sum is {result.get('sum')!r}, expected {expected}")
        return
    mine = result.get("parties", {}).get(done.party, {})
    for name, expected in (("original_count", keys), ("intersection_count", keys // 2)):
        if mine.get(name) != expected:
            raise failure(what, done, f"{name} is {mine.get(name)!r}, expected {expected}")


def platform_answer(what: str, done: Finished, kind: str, keys: int) -> dict[str, Any]:
    try:
        submitted = json.loads(done.stdout)
        answer = submitted["results"][done.party]
    except (ValueError, KeyError, TypeError):
        raise failure(what, done, "no JSON answer from sfnode submit") from None
    if done.returncode != 0 or not answer.get("ok"):
        raise failure(what, done, f"the job failed: {answer.get('error') or answer}")
    result = answer.get("result") or {}
    if kind == "psi":
        result = {"parties": result.get("parties", {})}
    check_value(what, done, result, kind, keys)
    marks = answer.get("phases") or {}
    return {"seconds": done.seconds, "job_seconds": answer.get("seconds"),
            "phase_seconds": platform_phases(marks),
            "overhead_seconds": platform_overhead(done, marks)}


def bare_answer(what: str, done: Finished, kind: str, keys: int) -> dict[str, Any]:
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(RESULT_MARK)]
    if not lines:
        raise failure(what, done, "the bare script printed no result")
    out = json.loads(lines[-1][len(RESULT_MARK):])
    if done.returncode != 0 or not out.get("ok"):
        raise failure(what, done, f"the bare job failed: {out.get('error')}")
    check_value(what, done, out["result"], kind, keys)
    return {"seconds": done.seconds, "phase_seconds": bare_phases(out.get("phases") or {})}


def platform_phases(began: dict[str, float]) -> dict[str, float]:
    """Seconds per phase from the runner's status (when each phase began; "done" ends the last)."""
    marks = [*PHASES, "done"]
    return {name: round(began[nxt] - began[name], 3)
            for name, nxt in pairwise(marks) if name in began and nxt in began}


def platform_overhead(done: Finished, marks: dict[str, float]) -> dict[str, float]:
    """The platform's own time around the runner: from starting ``podman exec ... sfnode
    submit`` to the runner's first mark (CLI, broker, worker, validation, slot, gate, runner
    start), and from the runner's last mark to the command's return (result file, supervisor,
    result backend, CLI). Both include one ``podman exec`` (see ``exec_seconds``)."""
    if not marks:
        return {}
    # the first mark is the runner's start ("import"; "run" for a pipeline), the last "done"
    return {"submit_to_runner": round(min(marks.values()) - done.started_at, 3),
            "result_to_submitter": round(done.ended_at - max(marks.values()), 3)}


def bare_phases(ended: dict[str, float]) -> dict[str, float]:
    """Seconds per phase from the bare script (seconds since its start when each phase ended)."""
    out, last = {}, 0.0
    for name in PHASES:
        if name in ended:
            out[name] = round(ended[name] - last, 3)
            last = ended[name]
    return out


# --- the node between jobs -------------------------------------------------------------------

# Run inside a container: wait (up to argv[2] seconds) until argv[1] Ray workers are idle and
# they and the standby runners together use at most a fifth of a CPU for a second (their
# imports are done; idle workers use a few ticks a second); print the seconds waited.
SETTLE_SCRIPT = """
import os, sys, time
want, limit = int(sys.argv[1]), float(sys.argv[2])
def scan():
    idle, ticks, standby = 0, 0, 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read()
            stat = open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()
        except OSError:
            continue
        argv = cmd.split(b"\\0")
        is_idle = cmd.startswith(b"ray::IDLE")
        is_standby = b"sfnode.runner" in argv and b"--standby" in argv
        if is_idle or is_standby:
            idle += is_idle
            standby += is_standby
            ticks += int(stat[11]) + int(stat[12])
    return idle, standby, ticks
start = time.monotonic()
last = None
while time.monotonic() - start < limit:
    now = scan()
    if (last is not None and now[:2] == last[:2] and now[2] - last[2] <= 20
            and now[0] >= want and (want == 0 or now[1] > 0)):
        break
    last = now
    time.sleep(1.0)
print(round(time.monotonic() - start, 1), *last)
"""
SETTLE_LIMIT_SECONDS = 90
RAY_UNIT, WORKER_UNIT = "secretflow-ray.service", "secretflow-worker.service"
# A drop-in that gives the Ray head Ray's own defaults: no preloaded modules, no warm pool.
PLAIN_DROPIN = f"/etc/systemd/system/{RAY_UNIT}.d/zz-benchmark-plain.conf"
PLAIN_DROPIN_TEXT = ("[Service]\nUnsetEnvironment=RAY_preload_python_modules "
                     "RAY_num_workers_soft_limit RAY_worker_maximum_startup_concurrency\n")


def settle(fed: Bench) -> dict[str, str]:
    """Wait until each node is ready for its next job as between real jobs: its warm Ray
    workers started and its standby runner waiting, all done importing."""
    out = {}
    for party in PARTIES:
        want = fed.configs[party].ray_warm_workers
        out[party] = exec_root(Bench.container(party), [
            VENV_PYTHON, "-c", SETTLE_SCRIPT, str(want), str(SETTLE_LIMIT_SECONDS)]).strip()
    return out


@contextlib.contextmanager
def plain_heads(fed: Bench) -> Iterator[None]:
    """The by-hand runs' nodes: each Ray head as Ray starts it (no preloaded modules, no warm
    workers) and the worker app stopped (it would top the pool up); all restored after."""
    for party in PARTIES:
        exec_root(Bench.container(party), ["sh", "-c", (
            f"systemctl stop {WORKER_UNIT} && mkdir -p $(dirname {PLAIN_DROPIN}) && "
            f"printf '{PLAIN_DROPIN_TEXT}' > {PLAIN_DROPIN} && systemctl daemon-reload && "
            f"systemctl restart {RAY_UNIT}")])
    try:
        wait_for_heads(fed)
        yield
    finally:
        for party in PARTIES:
            exec_root(Bench.container(party), ["sh", "-c", (
                f"rm -f {PLAIN_DROPIN} && systemctl daemon-reload && systemctl restart {RAY_UNIT} "
                f"&& systemctl start {WORKER_UNIT}")])
        wait_for_heads(fed)


def wait_for_heads(fed: Bench, limit: float = 60.0) -> None:
    """Until each Ray head's GCS takes connections again."""
    for party in PARTIES:
        config = fed.configs[party]
        exec_root(Bench.container(party), [VENV_PYTHON, "-c", (
            "import socket, sys, time\n"
            f"end = time.monotonic() + {limit}\n"
            "while True:\n"
            "    try:\n"
            f"        socket.create_connection(('{config.node_ip}', {config.ray_port}), 1).close(); break\n"
            "    except OSError:\n"
            "        if time.monotonic() > end: sys.exit('the Ray head did not come back')\n"
            "        time.sleep(0.5)\n")])
    time.sleep(3)  # the raylet registers after the GCS listens


# --- one measurement ------------------------------------------------------------------------


def run_platform(fed: Bench, kind: str, label: str, job_id: str, rep: int,
                 keys: int) -> Run:
    spec_path = write_spec(fed, platform_spec(kind, job_id, keys))
    commands = {p: submit_command(p, spec_path) for p in PARTIES}
    wall, done = run_both(commands, fed.deadline + RUN_MARGIN_SECONDS)
    what = f"{label} platform run {rep} (job {job_id})"
    parties = {p: platform_answer(what, done[p], kind, keys) for p in PARTIES}
    return Run(f"{label} platform", rep, job_id, wall, parties)


def run_bare(fed: Bench, kind: str, label: str, job_name: str, rep: int, keys: int,
             tls: bool = True) -> Run:
    """The by-hand job on both parties; ``tls`` false: with TLS off on both ("no-tls")."""
    measurement = f"{label} bare" if tls else f"{label} bare {NO_TLS}"
    commands = {p: bare_command(fed, p, kind, job_name, keys, tls) for p in PARTIES}
    wall, done = run_both(commands, fed.deadline + RUN_MARGIN_SECONDS)
    what = f"{measurement} run {rep} (job_name {job_name})"
    parties = {p: bare_answer(what, done[p], kind, keys) for p in PARTIES}
    return Run(measurement, rep, job_name, wall, parties)


@contextlib.contextmanager
def clear_text_allowed(fed: Bench) -> Iterator[None]:
    """The bare slot's two ports take clear text on both parties (a rule of the firewall's
    table, first in its input chain), then the rule is removed again."""
    for party in PARTIES:
        ports = ", ".join(str(p) for p in fed.federation.party(party).ports(fed.bare_slot))
        exec_root(Bench.container(party), ["nft", "insert", "rule", "inet", FIREWALL_TABLE, "input", "tcp",
                                           "dport", f"{{ {ports} }}", "accept", "comment", f'"{CLEAR_TEXT_RULE}"'])
    try:
        yield
    finally:
        for party in PARTIES:
            listing = json.loads(exec_root(Bench.container(party),
                                           ["nft", "-j", "list", "chain", "inet", FIREWALL_TABLE, "input"]))
            for item in listing["nftables"]:
                rule = item.get("rule") or {}
                if rule.get("comment") == CLEAR_TEXT_RULE:
                    exec_root(Bench.container(party), ["nft", "delete", "rule", "inet", FIREWALL_TABLE,
                                                       "input", "handle", str(rule["handle"])])


def log_run(run: Run) -> None:
    each = ", ".join(f"{p} {info['seconds']:.1f}" for p, info in run.parties.items())
    print(f"  {run.measurement:<19} #{run.rep}  {run.seconds:7.2f} s  ({each})  {run.job_id}",
          flush=True)


# --- PSI input data -----------------------------------------------------------------------


def psi_ranges(keys: int) -> dict[str, range]:
    half = keys // 2
    return {"alice": range(0, keys), "bob": range(half, half + keys)}


def write_ids(path: Path, ids: range) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write("id\n")
        handle.writelines(f"{i}\n" for i in ids)


def upload_psi_inputs(fed: Bench, keys: int) -> None:
    """Generate each party's ids once here and copy them into its data directory."""
    with tempfile.TemporaryDirectory(prefix="sff-bench-") as tmp:
        for party, ids in psi_ranges(keys).items():
            local = Path(tmp) / f"{party}.csv"
            write_ids(local, ids)
            container, data_dir = Bench.container(party), fed.configs[party].data_dir
            remote_dir = f"{data_dir}/{DATA_SUBDIR}"
            exec_root(container, ["mkdir", "-p", remote_dir])
            podman_ok(["cp", str(local), f"{container}:{data_dir}/{psi_input(keys)}"])
            own_inputs(container, remote_dir)


def own_inputs(container: str, directory: str) -> None:
    """The worker's user owns inputs; the Ray head's group reads them."""
    exec_root(container, ["chown", "-R", f"{NODE_USER}:{RAY_USER}", directory])
    exec_root(container, ["chmod", "-R", "u=rwX,g=rX,o=", directory])


def clean_up(fed: Bench) -> None:
    """Remove the spec files and the bare runs' outputs (best effort)."""
    for party in PARTIES:
        podman(["exec", Bench.container(party), "rm", "-rf", SPEC_DIR, BARE_DIR])


# --- the machine and the report -------------------------------------------------------------


def memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024**2, 1)
    return 0.0


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.machine()


def machine() -> dict[str, Any]:
    version = podman(["--version"])
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "memory_gib": memory_gib(),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "podman": version.stdout.strip() or version.stderr.strip(),
    }


def medians(runs: list[Run], names: Sequence[str] = MEASUREMENTS) -> dict[str, float]:
    out = {}
    for name in names:
        values = [r.seconds for r in runs if r.measurement == name]
        if values:
            out[name] = round(statistics.median(values), 3)
    return out


def part_medians(runs: list[Run], keys: Sequence[str],
                 names: Sequence[str] = MEASUREMENTS) -> dict[str, dict[str, float]]:
    """Per measurement, the median over runs and parties of each entry of the parties'
    mappings ``keys`` (phases, overhead parts, steps)."""
    out: dict[str, dict[str, float]] = {}
    for name in names:
        parts: dict[str, list[float]] = {}
        for run in (r for r in runs if r.measurement == name):
            for party in run.parties.values():
                for key in keys:
                    for part, value in (party.get(key) or {}).items():
                        parts.setdefault(part, []).append(value)
        if parts:
            out[name] = {part: round(statistics.median(v), 3) for part, v in parts.items()}
    return out


def ratios_of(med: dict[str, float], top: str, bottom: str) -> dict[str, float]:
    """Per job label, the median of "LABEL top" over the median of "LABEL bottom"."""
    out = {}
    for label in TARGETS:
        num, den = med.get(f"{label} {top}"), med.get(f"{label} {bottom}")
        if num is not None and den:
            out[label] = round(num / den, 3)
    return out


def ratios(med: dict[str, float]) -> dict[str, float]:
    """Platform/bare: what the platform adds."""
    return ratios_of(med, "platform", "bare")


def tls_ratios(med: dict[str, float]) -> dict[str, float]:
    """Bare with TLS / bare without: what TLS costs."""
    return ratios_of(med, "bare", f"bare {NO_TLS}")


def print_ratios(title: str, values: dict[str, float], targets: dict[str, float]) -> None:
    print(f"{title:<22} {'value':>6}  {'target':<8}")
    for label, value in values.items():
        target = targets.get(label)
        if target is None:
            print(f"{label:<22} {value:>6.3f}  {'-':<8}")
            continue
        verdict = "meets" if value <= target else "MISSES"
        print(f"{label:<22} {value:>6.3f}  {'<= ' + str(target):<8}  {verdict}")


def phase_medians(runs: list[Run]) -> dict[str, dict[str, float]]:
    """Per measurement, the median over runs and parties of each phase and overhead part."""
    return part_medians(runs, ("phase_seconds", "overhead_seconds"))


def exec_seconds(repeat: int = 5) -> float:
    """Median wall seconds of ``podman exec CONTAINER true``: the door both paths pay."""
    times = []
    for _ in range(repeat):
        start = time.monotonic()
        podman(["exec", Bench.container(PARTIES[0]), "true"])
        times.append(time.monotonic() - start)
    return round(statistics.median(times), 3)


def overhead(split: dict[str, float], exec_s: float | None) -> float | None:
    """The platform's own seconds per party: both overhead parts less one podman exec."""
    if "submit_to_runner" not in split or "result_to_submitter" not in split:
        return None
    return round(split["submit_to_runner"] + split["result_to_submitter"] - (exec_s or 0.0), 3)


def print_report(runs: list[Run], keys: int, repeat: int, info: dict[str, Any],
                 tls: bool | None = None, exec_s: float | None = None) -> None:
    med = medians(runs)
    print()
    print(f"{'measurement':<20} {'median s':>9}   runs (s)")
    for name, value in med.items():
        each = " ".join(f"{r.seconds:.2f}" for r in runs if r.measurement == name)
        print(f"{name:<20} {value:>9.2f}   {each}")
    for name, target in SECONDS_TARGETS.items():
        if name in med:
            verdict = "meets" if med[name] <= target else "MISSES"
            print(f"{name:<20} {med[name]:>9.2f}   target <= {target} s: {verdict}")
    print()
    print("median seconds per phase (over runs and parties)")
    for name, parts in phase_medians(runs).items():
        print(f"  {name:<20} " + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()))
    if exec_s is not None:
        print(f"  podman exec alone: {exec_s:.2f}")
        for name, parts in phase_medians(runs).items():
            own = overhead(parts, exec_s)
            if own is not None:
                verdict = "meets" if own <= OVERHEAD_TARGET else "MISSES"
                print(f"  {name}: platform overhead less podman exec {own:.2f} s "
                      f"(target <= {OVERHEAD_TARGET}: {verdict})")
    print()
    print_ratios("ratio platform/bare", ratios(med), TARGETS)
    tls_rat = tls_ratios(med)
    if tls_rat:
        print()
        print_ratios("ratio TLS/no-TLS (bare)", tls_rat, TLS_TARGETS)
    print()
    print(f"PSI keys per party: {keys:,} (intersection {keys // 2:,}); repeat {repeat}")
    if tls is not None:
        print(f"mutual TLS on the nodes: {'on' if tls else 'off'}")
    print(f"machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory_gib']} GiB, "
          f"kernel {info['kernel']} {info['arch']}, {info['podman']}")


def report_json(runs: list[Run], keys: int, repeat: int, info: dict[str, Any],
                fed: Bench | None, error: str | None,
                exec_s: float | None = None) -> dict[str, Any]:
    med = medians(runs)
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "ok": error is None,
        "error": error,
        "keys": keys,
        "repeat": repeat,
        "machine": info,
        "slots": {"platform": PLATFORM_SLOT, "bare": fed.bare_slot if fed else None},
        "tls": fed.tls if fed else None,
        "medians_seconds": med,
        "phase_medians_seconds": phase_medians(runs),
        "podman_exec_seconds": exec_s,
        "seconds_targets": SECONDS_TARGETS,
        "overhead_target": OVERHEAD_TARGET,
        "ratios": ratios(med),
        "targets": TARGETS,
        "tls_ratios": tls_ratios(med),
        "tls_targets": TLS_TARGETS,
        "runs": [{"measurement": r.measurement, "rep": r.rep, "job_id": r.job_id,
                  "seconds": r.seconds, "parties": r.parties} for r in runs],
    }


# --- main -----------------------------------------------------------------------------------


def run_all(fed: Bench, args: argparse.Namespace, runs: list[Run]) -> None:
    stamp = time.strftime("%m%d%H%M") + "-" + secrets.token_hex(2)
    jobs = [("spu_sum", "trivial")] + ([] if args.skip_psi else [("psi", "psi")])
    # Without TLS on the nodes the bare runs are already without it.
    no_tls = fed.tls and not args.skip_no_tls
    if not fed.tls:
        print("TLS is off on the nodes: no separate bare no-tls runs", flush=True)
    if not args.skip_psi:
        print(f"uploading PSI inputs: {args.keys:,} ids per party", flush=True)
        upload_psi_inputs(fed, args.keys)
    print(f"runs (platform slot {PLATFORM_SLOT}, bare slot {fed.bare_slot}, "
          f"TLS {'on' if fed.tls else 'off'}):", flush=True)

    def record(run: Run) -> None:
        runs.append(run)
        log_run(run)

    # The platform's runs: a standing node, ready between jobs.
    for rep in range(1, args.repeat + 1):
        for kind, label in jobs:
            short = "sum" if kind == "spu_sum" else "psi"
            print(f"  settled: {settle(fed)}", flush=True)
            record(run_platform(fed, kind, label, f"bench-{stamp}-{short}-plat{rep}", rep,
                                args.keys))
    # By hand: the same calls against Ray heads as Ray starts them.
    print("  by hand: Ray heads without warm workers, worker apps stopped", flush=True)
    with plain_heads(fed):
        for rep in range(1, args.repeat + 1):
            for kind, label in jobs:
                short = "sum" if kind == "spu_sum" else "psi"
                record(run_bare(fed, kind, label, f"bench-{stamp}-{short}-bare{rep}", rep,
                                args.keys))
                if no_tls:
                    with clear_text_allowed(fed):
                        record(run_bare(fed, kind, label, f"bench-{stamp}-{short}-notls{rep}",
                                        rep, args.keys, tls=False))


def positive_even(text: str) -> int:
    value = int(text)
    if value < 2 or value % 2:
        raise argparse.ArgumentTypeError("expected an even number >= 2")
    return value


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("expected a number >= 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Platform (sfnode submit) against bare SecretFlow scripts on the demo "
                    "federation, and bare with TLS against bare without: spu_sum and PSI "
                    "RR22, median wall seconds and ratios.")
    parser.add_argument("--keys", type=positive_even, default=1_000_000,
                        help="PSI ids per party, half of them shared (default 1000000)")
    parser.add_argument("--repeat", type=positive, default=3,
                        help="runs of each measurement (default 3)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="also write the figures and every run to FILE")
    parser.add_argument("--skip-psi", action="store_true", help="only the trivial job")
    parser.add_argument("--skip-no-tls", action="store_true",
                        help="no bare runs with TLS off (so no TLS/no-TLS ratios)")
    return parser


@dataclass
class Outcome:
    """How a benchmark went: the federation (None if it could not be read), one podman
    exec's seconds, the error that ended it and the exit code (2: the federation cannot be
    reached, 1: a job failed or a result is wrong)."""

    fed: Bench | None = None
    exec_s: float | None = None
    error: str | None = None
    code: int = 0


def against_the_demo(body: Callable[[Bench], None],
                     tidy: Callable[[Bench, str | None], None]) -> Outcome:
    """Read the demo federation, time one podman exec, run ``body`` on it, and whatever
    happened, ``tidy`` it (with the error, if any) once it was read."""
    out = Outcome()
    try:
        out.fed = load_bench()
        out.exec_s = exec_seconds()
        body(out.fed)
    except SetupError as exc:
        out.error, out.code = str(exc), 2
    except BenchError as exc:
        out.error, out.code = str(exc), 1
    finally:
        if out.fed is not None:
            tidy(out.fed, out.error)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    info = machine()
    runs: list[Run] = []
    outcome = against_the_demo(lambda fed: run_all(fed, args, runs), lambda fed, _: clean_up(fed))
    fed, exec_s, error, code = outcome.fed, outcome.exec_s, outcome.error, outcome.code
    print_report(runs, args.keys, args.repeat, info, fed.tls if fed else None, exec_s)
    if args.json:
        data = report_json(runs, args.keys, args.repeat, info, fed, error, exec_s)
        args.json.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if error:
        print(f"\nbenchmark FAILED: {error}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())

"""scripts/benchmark.py and scripts/by_hand.py without containers: the bare runs'
arguments with and without TLS, the trust bundle the by-hand job writes before
sf.init (run against a stand-in ``secretflow``), the order of the runs and the report."""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from conftest import env_for, tls_node
from sfnode.config import NodeConfig
from sfnode.federation import Federation
from sfnode.jobdir import PEERS_CERT_MODE, WORKDIR_UMASK

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmark", SCRIPTS / "benchmark.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bm = load_benchmark()


def bench_of(tmp_path: Path, federation_data: dict[str, Any],
             certificates: dict[str, tuple[str, str]], tls: bool = True) -> Any:
    """The demo's two parties as load_bench reads them (alice and bob; carol is in the
    federation file but not in the benchmark's jobs)."""
    alice, federation = tls_node(tmp_path, federation_data, certificates, tls=tls)
    overrides = {"NODE_ID": "bob", "NODE_IP": "10.89.0.3"}
    if tls:
        cert, key = certificates["bob"]
        (tmp_path / "tls" / "bob.crt").write_text(cert)
        (tmp_path / "tls" / "bob.key").write_text(key)
        overrides.update(TLS_CERT=str(tmp_path / "tls" / "bob.crt"),
                         TLS_KEY=str(tmp_path / "tls" / "bob.key"))
    bob = NodeConfig.from_mapping(env_for(tmp_path, **overrides))
    return bm.Bench({"alice": alice, "bob": bob}, federation)


def own_node(config: dict[str, Any], party: str) -> dict[str, Any]:
    return next(n for n in config["spu"]["nodes"] if n["party"] == party)


@pytest.mark.parametrize("party, peer", [("alice", "bob"), ("bob", "alice")])
def test_bare_run_with_tls_carries_the_supervisors_trust_bundle(
        tmp_path: Path, federation_data: dict[str, Any],
        certificates: dict[str, tuple[str, str]], party: str, peer: str) -> None:
    fed = bench_of(tmp_path, federation_data, certificates)
    assert fed.tls
    config = bm.bare_config(fed, party, "psi", "bench-x-psi-bare1", 10)
    workdir = f"{bm.BARE_DIR}/bench-x-psi-bare1"
    bundle = config["trust_bundle"]
    assert config["workdir"] == {"path": workdir, "umask": WORKDIR_UMASK}
    assert bundle["path"] == f"{workdir}/peers.pem"
    assert bundle["mode"] == PEERS_CERT_MODE
    federation: Federation = fed.federation
    assert bundle["text"] == federation.trust_bundle([peer])  # the other party only, no carol
    assert config["init"]["tls_config"]["ca_cert"] == bundle["path"]
    ssl = own_node(config, party)["tls_opts"]
    assert ssl["server_ssl_opts"]["ca_file_path"] == bundle["path"]
    assert ssl["client_ssl_opts"]["ca_file_path"] == bundle["path"]
    assert config["psi"]["output_path"][party] == f"{workdir}/psi_output.csv"


def test_bare_run_without_tls_has_no_tls_anywhere(
        tmp_path: Path, federation_data: dict[str, Any],
        certificates: dict[str, tuple[str, str]]) -> None:
    fed = bench_of(tmp_path, federation_data, certificates)
    with_tls = bm.bare_config(fed, "alice", "spu_sum", "bench-x-sum", 10)
    without = bm.bare_config(fed, "alice", "spu_sum", "bench-x-sum", 10, tls=False)
    assert without["trust_bundle"] is None
    assert "tls_config" not in without["init"]
    assert all("tls_opts" not in node for node in without["spu"]["nodes"])
    # otherwise the same job: same addresses, ports, work dir, link
    del with_tls["init"]["tls_config"], own_node(with_tls, "alice")["tls_opts"]
    assert {**with_tls, "trust_bundle": None} == without
    assert fed.configs["alice"].tls_enabled  # the node's own config is left as it was


def test_nodes_without_tls_get_no_bundle(
        tmp_path: Path, federation_data: dict[str, Any],
        certificates: dict[str, tuple[str, str]]) -> None:
    fed = bench_of(tmp_path, federation_data, certificates, tls=False)
    assert not fed.tls
    config = bm.bare_config(fed, "bob", "spu_sum", "bench-x-sum", 10)
    assert config["trust_bundle"] is None and "tls_config" not in config["init"]


# A stand-in SecretFlow: checks that the trust bundle is there, readable with its
# mode, when sf.init and sf.SPU get it, and computes the sum on one party.
FAKE_SECRETFLOW = '''
import os, stat

def _check(path):
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode != 0o640:
        raise RuntimeError("%s has mode %o" % (path, mode))
    with open(path) as handle:
        if "BEGIN CERTIFICATE" not in handle.read():
            raise RuntimeError("%s holds no certificate" % path)

def init(**kwargs):
    tls = kwargs.get("tls_config")
    if tls:
        _check(tls["ca_cert"])

class _Obj:
    def __init__(self, value):
        self.value = value
    def to(self, device):
        return self

class PYU:
    def __init__(self, party):
        self.party = party
    def __call__(self, fn):
        return lambda *args: _Obj(fn(*args))

class SPU:
    def __init__(self, cluster_def, link_desc=None):
        for node in cluster_def["nodes"]:
            if "tls_opts" in node:
                _check(node["tls_opts"]["server_ssl_opts"]["ca_file_path"])
    def __call__(self, fn):
        return lambda *objs: _Obj(fn(*[o.value for o in objs]))

def reveal(obj):
    return obj.value

def shutdown():
    pass
'''


@pytest.mark.parametrize("tls", [True, False])
def test_by_hand_writes_the_work_dir_and_bundle_before_sf_init(
        tmp_path: Path, federation_data: dict[str, Any],
        certificates: dict[str, tuple[str, str]], monkeypatch: pytest.MonkeyPatch,
        tls: bool) -> None:
    fed = bench_of(tmp_path, federation_data, certificates)
    jobs = tmp_path / "jobs"
    os.chmod(jobs, 0o2750)  # as the node role makes JOB_DIR
    monkeypatch.setattr(bm, "BARE_DIR", str(jobs / "bench-by-hand"))
    config = bm.bare_config(fed, "alice", "spu_sum", "bench-x-sum-bare1", 10, tls)
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "secretflow.py").write_text(FAKE_SECRETFLOW)
    (fake / "numpy.py").write_text("int32 = int\n")
    proc = subprocess.run([sys.executable, str(SCRIPTS / "by_hand.py"), json.dumps(config)],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": str(fake)})
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith(bm.RESULT_MARK))
    out = json.loads(line[len(bm.RESULT_MARK):])
    assert out["ok"], proc.stderr
    assert out["result"] == {"sum": 3}  # bob's share is his own: 0 here
    workdir = Path(config["workdir"]["path"])
    assert stat.S_IMODE(workdir.stat().st_mode) == 0o2770  # setgid from jobs/, group rwx
    bundle = workdir / "peers.pem"
    if tls:
        assert stat.S_IMODE(bundle.stat().st_mode) == PEERS_CERT_MODE
        assert bundle.read_text() == fed.federation.trust_bundle(["bob"])
        assert bundle.stat().st_gid == jobs.stat().st_gid
    else:
        assert not bundle.exists()


def fake_run(label: str, measurement: str, rep: int) -> Any:
    return bm.Run(f"{label} {measurement}", rep, f"job-{label}-{measurement}-{rep}", 1.0,
                  {"alice": {"seconds": 1.0}})


@pytest.mark.parametrize("tls, skip, expect_no_tls", [(True, False, True), (True, True, False),
                                                      (False, False, False)])
def test_platform_runs_on_settled_nodes_then_bare_runs_on_plain_heads(
        tmp_path: Path, federation_data: dict[str, Any],
        certificates: dict[str, tuple[str, str]], monkeypatch: pytest.MonkeyPatch,
        tls: bool, skip: bool, expect_no_tls: bool) -> None:
    fed = bench_of(tmp_path, federation_data, certificates, tls=tls)
    events: list[str] = []

    def in_container(container: str, command: list[str], input_text: str | None = None) -> str:
        if command[0] == bm.VENV_PYTHON and bm.SETTLE_SCRIPT in command:
            events.append(f"{container} settle")
            return "0.0 4 1 100"
        if command[0] == bm.VENV_PYTHON:  # waiting for the Ray head
            events.append(f"{container} head")
            return ""
        if command[0] == "sh":
            script = command[-1]
            assert bm.RAY_UNIT in script and bm.WORKER_UNIT in script, script
            events.append(f"{container} {'plain' if 'printf' in script else 'restore'}")
            return ""
        # the firewall rule that lets the no-tls runs' clear text through: inserted, listed, deleted
        events.append(f"{container} nft {command[1] if command[1] != '-j' else 'list'}")
        if command[1] == "insert":
            assert "{ 20031, 21031 }" in " ".join(command) and bm.CLEAR_TEXT_RULE in command[-1], command
        return json.dumps({"nftables": [{"rule": {"comment": bm.CLEAR_TEXT_RULE, "handle": 7}}]})

    def platform(fed: Any, kind: str, label: str, job_id: str, rep: int, keys: int) -> Any:
        events.append("platform")
        return fake_run(label, "platform", rep)

    def bare(fed: Any, kind: str, label: str, job_id: str, rep: int, keys: int, tls: bool = True) -> Any:
        events.append("bare" if tls else "bare no-tls")
        return fake_run(label, "bare" if tls else "bare no-tls", rep)

    monkeypatch.setattr(bm, "upload_psi_inputs", lambda fed, keys: None)
    monkeypatch.setattr(bm, "run_platform", platform)
    monkeypatch.setattr(bm, "run_bare", bare)
    monkeypatch.setattr(bm, "exec_root", in_container)
    monkeypatch.setattr(bm.time, "sleep", lambda seconds: None)
    runs: list[Any] = []
    args = argparse.Namespace(keys=10, repeat=2, skip_psi=False, skip_no_tls=skip)
    bm.run_all(fed, args, runs)
    bare_each = ["bare", "bare no-tls"] if expect_no_tls else ["bare"]
    one_rep = [f"{label} {m}" for label in ("trivial", "psi") for m in bare_each]
    assert [r.measurement for r in runs] == ["trivial platform", "psi platform"] * 2 + one_rep * 2
    assert [r.rep for r in runs] == [1, 1, 2, 2] + [1] * len(one_rep) + [2] * len(one_rep)
    settled = ["sff-demo-alice settle", "sff-demo-bob settle", "platform"]
    heads = ["sff-demo-alice head", "sff-demo-bob head"]
    around = ["sff-demo-alice nft insert", "sff-demo-bob nft insert", "bare no-tls",
              "sff-demo-alice nft list", "sff-demo-alice nft delete",
              "sff-demo-bob nft list", "sff-demo-bob nft delete"]
    bare_runs = (["bare"] + (around if expect_no_tls else [])) * 4
    assert events == (settled * 4 + ["sff-demo-alice plain", "sff-demo-bob plain", *heads]
                      + bare_runs + ["sff-demo-alice restore", "sff-demo-bob restore", *heads])


def test_report_has_the_tls_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    seconds = {"trivial platform": 20.0, "trivial bare": 19.0, "trivial bare no-tls": 18.0,
               "psi platform": 22.0, "psi bare": 21.0, "psi bare no-tls": 20.0}
    runs = [bm.Run(name, 1, "job", value, {}) for name, value in seconds.items()]
    med = bm.medians(runs)
    assert med == seconds
    assert bm.ratios(med) == {"trivial": round(20 / 19, 3), "psi": round(22 / 21, 3)}
    assert bm.tls_ratios(med) == {"trivial": round(19 / 18, 3), "psi": 1.05}
    info = {"nproc": 2, "cpu": "cpu", "memory_gib": 1.0, "kernel": "k", "arch": "x",
            "podman": "podman"}
    bm.print_report(runs, 10, 1, info, True)
    text = capsys.readouterr().out
    assert "psi bare no-tls" in text and "ratio TLS/no-TLS (bare)" in text
    assert "<= 1.1" in text and "meets" in text
    data = bm.report_json(runs, 10, 1, info, None, None)
    assert data["tls_ratios"] == {"trivial": round(19 / 18, 3), "psi": 1.05}
    assert data["tls_targets"] == {"psi": 1.10}
    assert data["ratios"] == bm.ratios(med)


def test_report_without_no_tls_runs_has_no_tls_ratios(
        capsys: pytest.CaptureFixture[str]) -> None:
    runs = [bm.Run("trivial platform", 1, "a", 2.0, {}), bm.Run("trivial bare", 1, "b", 1.0, {})]
    assert bm.tls_ratios(bm.medians(runs)) == {}
    info = {"nproc": 2, "cpu": "cpu", "memory_gib": 1.0, "kernel": "k", "arch": "x",
            "podman": "podman"}
    bm.print_report(runs, 10, 1, info)
    assert "TLS/no-TLS" not in capsys.readouterr().out


def test_skip_no_tls_flag() -> None:
    assert bm.build_parser().parse_args(["--skip-no-tls"]).skip_no_tls
    assert not bm.build_parser().parse_args([]).skip_no_tls


def load_pipelines_benchmark() -> ModuleType:
    sys.path.insert(0, str(SCRIPTS))  # it imports benchmark.py's helpers, as when run
    try:
        spec = importlib.util.spec_from_file_location("benchmark_pipelines",
                                                      SCRIPTS / "benchmark_pipelines.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(SCRIPTS))


bp = load_pipelines_benchmark()


def test_pipeline_by_hand_runs_in_the_jobs_dir_with_the_trust_bundle(
        tmp_path: Path, federation_data: dict[str, Any],
        certificates: dict[str, tuple[str, str]]) -> None:
    """By hand, a pipeline's work dir is JOB_DIR/<job> (where its steps write, as the
    runner's do), with the supervisor's trust bundle; the spec is the example, unchanged
    but for its id and slot."""
    fed = bench_of(tmp_path, federation_data, certificates)
    spec = bp.spec_for("lr", "bench-x-lr-hand1", fed.bare_slot)
    config = bp.by_hand_config(fed, "bob", spec)
    workdir = f"{fed.configs['bob'].job_dir}/bench-x-lr-hand1"
    assert config["workdir"] == {"path": workdir, "umask": WORKDIR_UMASK}
    assert config["trust_bundle"]["path"] == f"{workdir}/peers.pem"
    assert config["trust_bundle"]["text"] == fed.federation.trust_bundle(["alice"])
    assert config["spec"]["params"] == bp.example("lr")["params"]
    assert (config["spec"]["slot"], config["env_file"]) == (fed.bare_slot, bm.NODE_ENV)


def test_pipeline_phases_from_the_marks() -> None:
    marks = {"run": 100.0, "step join": 103.5, "step split": 106.0, "shutdown": 120.0, "done": 121.25}
    assert bp.phases_of(marks, marks["run"]) == {"before_steps": 3.5, "steps": 16.5, "shutdown": 1.25}
    assert bp.phases_of({"import": 4.0}, 0.0) == {}  # failed before its first step

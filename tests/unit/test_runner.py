from __future__ import annotations

import functools
import json
import os
import signal
import socket
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

import pytest

from conftest import FakeSF, full_spec, job_context
from sfnode.config import NodeConfig
from sfnode.federation import Federation
from sfnode.jobspec import JobSpec, PartySpec
from sfnode import runner
from sfnode.runner import PeerProber, StatusFile, run


@pytest.fixture(autouse=True)
def sigint_restored():
    """A failed run ignores SIGINT from then on (its process ends); pytest's stays."""
    saved = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, saved)


def test_prober_records_who_answered(tmp_path: Path) -> None:
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    spec = JobSpec(job_id="j", kind="ping", slot=0, deadline_seconds=60, parties=(
        PartySpec("alice", "127.0.0.1", 1, 2),
        PartySpec("bob", "127.0.0.1", listening.getsockname()[1], 3),
        PartySpec("carol", "127.0.0.1", closed_port, 4)))
    status = StatusFile(tmp_path / "status.json", spec, "alice")
    prober = PeerProber(spec.peers("alice"), status.peer_answered, interval=0.05)
    prober.start()
    prober.join(timeout=0.5)
    prober.stop()
    prober.join()
    listening.close()
    peers = json.loads((tmp_path / "status.json").read_text())["peers"]
    assert peers["bob"]["answered"] is True
    assert peers["carol"] == {"address": f"127.0.0.1:{closed_port}", "answered": False,
                              "answered_at": None}
    assert "alice" not in peers


def fake_secretflow(init_error: Exception | None = None) -> types.ModuleType:
    module = types.ModuleType("secretflow")
    module.calls = []  # type: ignore[attr-defined]

    def init(**kwargs: Any) -> None:
        module.calls.append(("init", kwargs))
        if init_error:
            raise init_error

    def shutdown(**kwargs: Any) -> None:
        module.calls.append(("shutdown", kwargs))

    module.init, module.shutdown = init, shutdown  # type: ignore[attr-defined]
    fake = FakeSF()
    module.PYU, module.SPU, module.reveal = fake.PYU, fake.SPU, fake.reveal  # type: ignore
    return module


def test_run_writes_phases_and_result(config: NodeConfig, federation: Federation,
                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = fake_secretflow()
    monkeypatch.setitem(sys.modules, "secretflow", module)
    ctx = job_context(config, federation, full_spec(), tmp_path)
    status = StatusFile(tmp_path / "status.json", ctx.spec, "alice")
    outcome = run(ctx.spec, ctx, status)
    assert outcome["ok"] is True and outcome["phase"] == "done"
    assert outcome["result"]["reached"] == ["alice", "bob"]
    assert list(outcome["phases"]) == ["import", "init", "run", "shutdown", "done"]
    assert json.loads((tmp_path / "result.json").read_text())["final"] is True
    assert [c[0] for c in module.calls] == ["init", "shutdown"]


def test_run_turns_exceptions_into_results(config: NodeConfig, federation: Federation,
                                           tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    module = fake_secretflow(RuntimeError("Failed to wait for parties: ['bob'] to start"))
    monkeypatch.setitem(sys.modules, "secretflow", module)
    # no peer answers, and no probe leaves this machine
    monkeypatch.setattr(runner, "PeerProber", functools.partial(PeerProber, probe=lambda host, port: False))
    ctx = job_context(config, federation, full_spec(), tmp_path)
    outcome = run(ctx.spec, ctx, StatusFile(tmp_path / "status.json", ctx.spec, "alice"))
    assert outcome["ok"] is False and outcome["phase"] == "init"
    assert outcome["error"] == ("no answer from party bob (10.89.0.3:20000) on its rayfed port; "
                                "RuntimeError in phase init: Failed to wait for parties: "
                                "['bob'] to start")
    assert "result" not in outcome
    assert [c[0] for c in module.calls] == ["init"]  # nothing to shut down


def test_a_failed_run_is_final_on_disk_before_secretflows_error_shutdown(
        config: NodeConfig, federation: Federation, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the peers end on rayfed's error message while this side still shuts down
    module = fake_secretflow()
    seen: list[Any] = []
    module.shutdown = lambda **kwargs: seen.append(  # type: ignore[attr-defined]
        (kwargs, json.loads((tmp_path / "result.json").read_text())))
    monkeypatch.setitem(sys.modules, "secretflow", module)

    def unreadable(sf: Any, ctx: Any) -> dict[str, Any]:
        raise PermissionError("shared/locked.csv")

    monkeypatch.setattr(runner, "run_kind", unreadable)
    ctx = job_context(config, federation, full_spec(), tmp_path)
    outcome = run(ctx.spec, ctx, StatusFile(tmp_path / "status.json", ctx.spec, "alice"))
    assert outcome["ok"] is False and outcome["phase"] == "run"
    [(kwargs, on_disk)] = seen
    assert kwargs == {"on_error": True}
    assert on_disk["final"] is True and on_disk["ok"] is False
    assert "PermissionError in phase run: shared/locked.csv" in on_disk["error"], on_disk


def test_rayfeds_sigint_ends_the_step_and_cannot_cut_the_result_short(
        config: NodeConfig, federation: Federation, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # rayfed's own handler shuts rayfed down and exits from wherever the main thread is
    def rayfeds_handler(signum: int, frame: Any) -> None:
        sys.exit(1)

    fed_api = types.SimpleNamespace(_signal_handler=rayfeds_handler)
    monkeypatch.setattr(runner, "_rayfed_api", lambda: fed_api)
    module = fake_secretflow()
    module.init = lambda **kwargs: signal.signal(signal.SIGINT, fed_api._signal_handler)  # as fed.init
    shutdowns: list[dict[str, Any]] = []

    def shutdown(**kwargs: Any) -> None:  # a second SIGINT while the failure is handled
        shutdowns.append(kwargs)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)

    module.shutdown = shutdown
    monkeypatch.setitem(sys.modules, "secretflow", module)

    def waits_for_a_peer(sf: Any, ctx: Any) -> dict[str, Any]:
        os.kill(os.getpid(), signal.SIGINT)  # this party's task failed meanwhile
        time.sleep(5)
        return {}

    monkeypatch.setattr(runner, "run_kind", waits_for_a_peer)
    monkeypatch.setattr(runner, "PeerProber", functools.partial(PeerProber, probe=lambda host, port: True))
    ctx = job_context(config, federation, full_spec(), tmp_path)
    outcome = run(ctx.spec, ctx, StatusFile(tmp_path / "status.json", ctx.spec, "alice"))
    assert outcome["ok"] is False and outcome["phase"] == "run", outcome
    assert outcome["error"].startswith("interrupted in phase run (SIGINT"), outcome["error"]
    assert shutdowns == [{"on_error": True}]
    assert json.loads((tmp_path / "result.json").read_text())["final"] is True

    # with rayfed's record of the error it could not send, that error is the cause
    unsent = types.SimpleNamespace(cause="RuntimeError: read csv file first line failed")
    context = types.SimpleNamespace(get_cleanup_manager=lambda: types.SimpleNamespace(
        get_last_sending_error=lambda: unsent))
    monkeypatch.setitem(sys.modules, "fed", types.ModuleType("fed"))
    monkeypatch.setitem(sys.modules, "fed._private", types.ModuleType("fed._private"))
    monkeypatch.setitem(sys.modules, "fed._private.global_context", types.SimpleNamespace(
        get_global_context=lambda: context))
    (tmp_path / "result.json").unlink()
    outcome = run(ctx.spec, ctx, StatusFile(tmp_path / "status.json", ctx.spec, "alice"))
    assert outcome["error"] == ("run failed here (rayfed passed the error on to the peers): "
                                "RuntimeError: read csv file first line failed"), outcome["error"]


def test_a_kind_that_starts_secretflow_itself_hands_its_result_over_before_the_shutdown(
        config: NodeConfig, federation: Federation, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "get_kind", lambda kind: types.SimpleNamespace(starts_secretflow=True))
    seen: list[dict[str, Any]] = []
    ctx = job_context(config, federation, full_spec(), tmp_path)
    status = StatusFile(tmp_path / "status.json", ctx.spec, "alice")

    def pipeline(sf: Any, ctx: Any) -> dict[str, Any]:
        status.phase("step train")
        ctx.on_result({"auc": 0.99})
        seen.append(json.loads((tmp_path / "result.json").read_text()))  # before the shutdown
        raise RuntimeError("the links' shutdown failed")

    monkeypatch.setattr(runner, "run_kind", pipeline)
    outcome = run(ctx.spec, ctx, status)
    [handed] = seen
    assert handed["ok"] is True and handed["final"] is True and handed["result"] == {"auc": 0.99}
    assert handed["phase"] == "shutdown" and "step train" in handed["phases"], handed
    # a failure after the hand-over is the job's outcome (named by its step)
    assert outcome["ok"] is False and outcome["phase"] == "shutdown", outcome
    assert outcome["error"] == "RuntimeError in phase shutdown: the links' shutdown failed", outcome
    assert json.loads((tmp_path / "result.json").read_text()) == outcome


def test_a_peer_that_never_listened_is_named_when_rayfed_gives_up(
        config: NodeConfig, federation: Federation, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # rayfed's readiness ping gives up on a silent peer by exiting, naming nobody
    module = fake_secretflow(SystemExit(15))
    monkeypatch.setitem(sys.modules, "secretflow", module)
    # no peer answers, and no probe leaves this machine
    monkeypatch.setattr(runner, "PeerProber", functools.partial(PeerProber, probe=lambda host, port: False))
    ctx = job_context(config, federation, full_spec(parties=("alice", "bob", "carol")), tmp_path)
    status = StatusFile(tmp_path / "status.json", ctx.spec, "alice")
    status.peer_answered("carol")
    outcome = run(ctx.spec, ctx, status)
    assert outcome["error"].startswith("no answer from party bob (10.89.0.3:20000) on its rayfed "
                                       "port; exited in phase init with code 15"), outcome["error"]
    assert "carol" not in outcome["error"]


def test_rayfeds_ping_waits_until_every_peer_listens() -> None:
    from sfnode.runner import ping_when_peers_listen

    pings: list[dict[str, object]] = []
    fed_api = types.SimpleNamespace(ping_others=lambda **kwargs: pings.append(kwargs) or True)
    listening: set[str] = set()
    prober = PeerProber([PartySpec("bob", "10.89.0.3", 20000, 21000)], lambda peer: None,
                        interval=0.01, probe=lambda ip, port: ip in listening)
    ping_when_peers_listen(fed_api, prober)
    prober.start()
    pinger = threading.Thread(target=fed_api.ping_others,
                              kwargs={"addresses": {}, "self_party": "alice"})
    pinger.start()
    pinger.join(0.2)
    assert pinger.is_alive() and pings == []  # bob's port is not open yet
    listening.add("10.89.0.3")
    pinger.join(5)
    assert not pinger.is_alive()
    assert pings == [{"addresses": {}, "self_party": "alice"}]


def test_shutdown_leaves_ray_to_the_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    from sfnode.runner import shutdown_leaving_ray

    calls: list[str] = []
    fake_ray = types.SimpleNamespace(shutdown=lambda *a, **k: calls.append("ray.shutdown"))
    monkeypatch.setitem(sys.modules, "ray", fake_ray)

    def sf_shutdown() -> None:  # as SecretFlow's: rayfed's shutdown, then ray.shutdown()
        calls.append("fed.shutdown")
        sys.modules["ray"].shutdown(_exiting_interpreter=True)

    original = fake_ray.shutdown
    shutdown_leaving_ray(types.SimpleNamespace(shutdown=sf_shutdown))
    assert calls == ["fed.shutdown"]
    assert fake_ray.shutdown is original


def test_a_peers_failure_brought_by_rayfed_names_that_peer() -> None:
    from sfnode.runner import _describe

    class RayTaskError(Exception):
        pass

    error = RayTaskError("\x1b[36mray::ReceiverProxyActor.get_data()\x1b[39m ... FedRemoteError occurred at bob")
    text = _describe(error, "run")
    assert text.startswith("party bob's part failed in phase run (rayfed passed on its error)"), text
    assert "\x1b" not in text and "ray::ReceiverProxyActor.get_data() ..." in text
    assert _describe(ValueError("bad column"), "run") == "ValueError in phase run: bad column"

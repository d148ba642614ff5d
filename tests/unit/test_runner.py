from __future__ import annotations

import json
import socket
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from conftest import full_spec
from sfnode.config import NodeConfig
from sfnode.federation import Federation
from sfnode.kinds import JobContext, run_spu_sum, sf_init_kwargs, spu_cluster_def
from sfnode.runner import PeerProber, StatusFile, run
from sfnode.spec import JobSpec, PartySpec, validate_spec


def context(config: NodeConfig, federation: Federation, spec: dict[str, Any],
            workdir: Path) -> JobContext:
    return JobContext(spec=validate_spec(spec, config, federation), config=config,
                      workdir=workdir)


def test_sf_init_is_production_mode(config: NodeConfig, federation: Federation,
                                    tmp_path: Path) -> None:
    ctx = context(config, federation, full_spec(slot=1), tmp_path)
    kwargs = sf_init_kwargs(ctx)
    assert "parties" not in kwargs  # that would be simulation mode
    assert kwargs["address"] == "10.89.0.2:61379"
    assert kwargs["job_name"] == "ping-0001"
    assert kwargs["enable_waiting_for_other_parties_ready"] is True
    assert kwargs["cluster_config"] == {
        "parties": {"alice": {"address": "10.89.0.2:20001", "listen_addr": "0.0.0.0:20001"},
                    "bob": {"address": "10.89.0.3:20001", "listen_addr": "0.0.0.0:20001"}},
        "self_party": "alice"}


def test_spu_nodes_use_listen_address(config: NodeConfig, federation: Federation,
                                      tmp_path: Path) -> None:
    ctx = context(config, federation, full_spec(slot=2), tmp_path)
    cluster = spu_cluster_def(ctx, "CHEETAH")
    assert cluster["nodes"][1] == {"party": "bob", "address": "10.89.0.3:21002",
                                   "listen_address": "0.0.0.0:21002"}
    assert cluster["runtime_config"] == {"protocol": "CHEETAH", "field": "FM128"}


class FakeObject:
    def __init__(self, owner: str, value: Any) -> None:
        self.owner, self.value = owner, value

    def to(self, device: Any) -> FakeObject:
        return FakeObject(getattr(device, "party", "spu"), self.value)


class FakeSF:
    """Records what each PYU is asked to compute, like production mode on one party."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        sf = self

        class PYU:
            def __init__(self, party: str) -> None:
                self.party = party

            def __call__(self, fn: Any) -> Any:
                def call(*args: Any) -> FakeObject:
                    sf.calls.append((self.party, args))
                    values = [a.value if isinstance(a, FakeObject) else a for a in args]
                    return FakeObject(self.party, fn(*values))
                return call

        class SPU:
            def __init__(self, cluster_def: dict[str, Any], link_desc: dict[str, Any]) -> None:
                self.cluster_def = cluster_def

            def __call__(self, fn: Any) -> Any:
                return lambda *objs: FakeObject("spu", fn(*[o.value for o in objs]))

        self.PYU, self.SPU = PYU, SPU

    def reveal(self, obj: Any) -> Any:
        return [o.value for o in obj] if isinstance(obj, list) else obj.value


def test_spu_sum_uses_only_own_value(config: NodeConfig, federation: Federation,
                                     tmp_path: Path) -> None:
    pytest.importorskip("numpy")
    spec = full_spec("spu_sum", params={"values": {"alice": 3, "bob": 4}})
    sf = FakeSF()
    result = run_spu_sum(sf, context(config, federation, spec, tmp_path))
    # bob's entry of the spec is never an input here: bob contributes it on bob's node.
    assert sf.calls == [("alice", (3,)), ("bob", (0,))]
    assert result == {"sum": 3, "protocol": "SEMI2K", "parties": ["alice", "bob"]}


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
    ctx = context(config, federation, full_spec(), tmp_path)
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
    ctx = context(config, federation, full_spec(), tmp_path)
    outcome = run(ctx.spec, ctx, StatusFile(tmp_path / "status.json", ctx.spec, "alice"))
    assert outcome["ok"] is False and outcome["phase"] == "init"
    assert outcome["error"] == ("RuntimeError in phase init: Failed to wait for parties: "
                                "['bob'] to start")
    assert "result" not in outcome
    assert [c[0] for c in module.calls] == ["init"]  # nothing to shut down

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import env_for, full_spec
from sfnode import app as app_module
from sfnode import health as health_module
from sfnode.app import app, celery_settings, run_job_answer
from sfnode.broker import RUN_JOB_TASK
from sfnode.config import NodeConfig


@pytest.fixture
def node(config: NodeConfig) -> Iterator[NodeConfig]:
    app_module.use_config(config)
    yield config
    app_module.use_config(None)


def test_settings_from_config(node: NodeConfig) -> None:
    settings = celery_settings(node)
    assert settings["broker_url"] == node.redis_url
    assert settings["result_backend"] == node.result_backend_url
    assert settings["task_default_queue"] == "secretflow"
    assert settings["task_acks_late"] and settings["task_reject_on_worker_lost"]
    assert settings["worker_prefetch_multiplier"] == 1
    assert settings["broker_transport_options"]["visibility_timeout"] > 86400
    assert settings["result_backend_transport_options"]["visibility_timeout"] > 86400
    assert settings["accept_content"] == ["json"]
    assert settings["result_expires"] == 7 * 24 * 3600
    assert app.conf.broker_url == node.redis_url  # the module-level app reads the same


def test_malformed_spec_returns_failure_dict(node: NodeConfig) -> None:
    answer = run_job_answer({"job_id": "X", "kind": "ping"})
    assert answer["ok"] is False
    assert answer["phase"] == "validate"
    fields = [p["field"] for p in answer["problems"]]
    assert fields[:2] == ["job_id", "slot"]
    assert "job spec field job_id: 'X'" in answer["error"]
    json.dumps(answer)


@pytest.mark.parametrize("spec", [None, "not a dict", [1, 2]])
def test_non_object_spec_eager(node: NodeConfig, spec: object) -> None:
    app.conf.task_always_eager = True
    try:
        answer = app.tasks[RUN_JOB_TASK].delay(spec).get(timeout=10)
    finally:
        app.conf.task_always_eager = False
    assert answer["ok"] is False
    assert "is not a JSON object" in answer["error"]


def test_broken_environment_is_an_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    app_module.use_config(None)
    monkeypatch.delenv("NODE_ID", raising=False)
    answer = run_job_answer(full_spec())
    assert answer["ok"] is False and "NODE_ID is missing" in answer["error"]


def test_health_reports_versions_without_joining_ray(
        tmp_path: Path, federation_data: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    # A closed loopback port stands for a Ray head that is down. With ray installed the probe
    # subprocess fails or times out; without it, it fails to import ray. Either way the
    # answer says so, and the worker process itself never imports ray.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    federation_data["parties"][0]["ip"] = "127.0.0.1"
    (tmp_path / "federation.json").write_text(json.dumps(federation_data))
    config = NodeConfig.from_mapping(env_for(tmp_path, NODE_IP="127.0.0.1",
                                             RAY_PORT=str(closed_port)))
    app_module.use_config(config)
    monkeypatch.setattr(health_module, "PROBE_TIMEOUT_SECONDS", 5)
    ray_loaded = "ray" in sys.modules
    try:
        answer = app.tasks["sfnode.health"].apply().get(timeout=60)
    finally:
        app_module.use_config(None)
    assert answer["node_id"] == "alice"
    assert answer["versions"]["celery"].startswith("5.6")
    assert answer["versions"]["python"]
    assert answer["ray"]["address"] == f"127.0.0.1:{closed_port}"
    assert answer["ray"]["resources"] is None and answer["ray"]["error"]
    assert answer["ok"] is False
    assert answer["federation_problems"] == []
    assert ("ray" in sys.modules) == ray_loaded


def test_a_job_that_fails_here_is_journalled_and_ended_on_its_other_parties(
        config: NodeConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    from sfnode import channel
    from sfnode.journal import Journal

    told: list[tuple[str, list[str], str]] = []
    monkeypatch.setattr(channel, "tell_peers_to_end",
                        lambda cfg, fed, job_id, parties, reason, journal: told.append(
                            (job_id, parties, reason)))
    spec = full_spec()
    failed = {"ok": False, "phase": "validate", "error": "slot 0 on party alice is busy"}
    app_module._journal_and_fail_fast(config, spec, failed)
    assert told == [("ping-0001", ["alice", "bob"], "its part failed in phase validate")]
    # ended by another party, a reused id, a success: nobody is told
    for answer in ({**failed, "cancelled_by": "bob"}, {**failed, "reused": True},
                   {"ok": True, "phase": "done", "result": {"pong": True}}):
        app_module._journal_and_fail_fast(config, spec, answer)
    assert len(told) == 1
    ended = [e for e in Journal(config.journal_path, "alice").entries() if e["event"] == "ended"]
    assert [(e["ok"], e.get("by")) for e in ended] == [(False, None), (False, "bob"),
                                                       (False, None), (True, None)]
    assert ended[-1]["result_digest"].startswith("sha256:")
    # a failure bob's own error brought (rayfed passed it on): bob reports his failure himself
    told.clear()
    brought = {"ok": False, "phase": "run", "error": "party bob's part failed in phase run (rayfed "
               "passed on its error): FedRemoteError: FedRemoteError occurred at bob caused by ..."}
    app_module._journal_and_fail_fast(config, full_spec(parties=("alice", "bob", "carol")), brought)
    assert told == [("ping-0001", ["alice", "carol"], "its part failed in phase run")]

"""The Celery wire: the submitter's client and the worker speak the same."""
from __future__ import annotations

from sfnode.app import celery_settings
from sfnode.broker import (TASKS, VISIBILITY_TIMEOUT_SECONDS, WIRE_SETTINGS, client_settings,
                           queue_keys, status_client_settings)
from sfnode.config import MAX_DEADLINE_SECONDS, NodeConfig


def test_client_and_worker_share_the_wire(config: NodeConfig) -> None:
    worker = celery_settings(config)
    client = client_settings(config.redis_url, config.result_backend_url, config.celery_queue)
    for key, value in WIRE_SETTINGS.items():
        assert worker[key] == client[key] == value
    assert worker["accept_content"] == ["json"]
    assert (client["broker_url"], client["result_backend"], client["task_default_queue"]) == (
        worker["broker_url"], worker["result_backend"], worker["task_default_queue"])
    assert set(worker["task_routes"]) == set(TASKS)


def test_a_task_outlives_the_longest_job() -> None:
    assert VISIBILITY_TIMEOUT_SECONDS > MAX_DEADLINE_SECONDS


def test_status_pings_without_retrying(config: NodeConfig) -> None:
    settings = status_client_settings(config)
    assert settings["broker_url"] == config.redis_url
    assert settings["broker_connection_retry_on_startup"] is False


def test_queue_keys_cover_every_priority() -> None:
    assert queue_keys("secretflow") == ["secretflow", "secretflow\x06\x163",
                                        "secretflow\x06\x166", "secretflow\x06\x169"]

"""The Celery wire between a submitter and the workers, typed once.

Task names, what goes over the wire (JSON only) and how long the broker
keeps things: the worker app (``sfnode.app``), the submitter (``sfnode
submit``/``health``) and ``sfnode status`` all read them from here. Plain
data: importing this module imports no Celery and builds no app.
"""

from __future__ import annotations

from typing import Any

from sfnode.config import MAX_DEADLINE_SECONDS, NodeConfig

HEALTH_TASK = "sfnode.health"
RUN_JOB_TASK = "sfnode.run_job"
TASKS = (HEALTH_TASK, RUN_JOB_TASK)
# A task is redelivered only if its worker is lost, never while a job of the
# longest allowed deadline may still be running.
VISIBILITY_TIMEOUT_SECONDS = MAX_DEADLINE_SECONDS + 3600
RESULT_EXPIRES_SECONDS = 7 * 24 * 3600
# JSON only: a pickled message would let whoever reaches the broker run code.
WIRE_SETTINGS: dict[str, Any] = {
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "result_accept_content": ["json"],
}
CLIENT_CONNECT_TIMEOUT_SECONDS = 10
STATUS_CONNECT_TIMEOUT_SECONDS = 5
# Celery's Redis transport keeps a queue's priorities in separate lists.
PRIORITY_SEPARATOR, PRIORITY_STEPS = "\x06\x16", (3, 6, 9)


def transport_options() -> dict[str, Any]:
    return {"visibility_timeout": VISIBILITY_TIMEOUT_SECONDS}


def client_settings(broker_url: str, backend_url: str, queue: str) -> dict[str, Any]:
    """A submitter's Celery client of one party's broker and result backend."""
    return {
        "broker_url": broker_url,
        "result_backend": backend_url,
        "task_default_queue": queue,
        **WIRE_SETTINGS,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": CLIENT_CONNECT_TIMEOUT_SECONDS,
        "redis_socket_connect_timeout": CLIENT_CONNECT_TIMEOUT_SECONDS,
    }


def status_client_settings(config: NodeConfig) -> dict[str, Any]:
    """The client ``sfnode status`` pings this node's worker with: it fails fast, no retries."""
    return {"broker_url": config.redis_url,
            "broker_connection_timeout": STATUS_CONNECT_TIMEOUT_SECONDS,
            "broker_connection_retry_on_startup": False}


def queue_keys(queue: str) -> list[str]:
    """The Redis lists that hold ``queue``'s messages, all priorities."""
    return [queue] + [f"{queue}{PRIORITY_SEPARATOR}{step}" for step in PRIORITY_STEPS]

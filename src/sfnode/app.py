"""The Celery app: ``celery -A sfnode.app worker``.

Its configuration is read from the environment (systemd's ``EnvironmentFile=``
holding /etc/secretflow/node.env) when the worker first needs it; a broken
env file stops the worker at start with every problem listed.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

from celery import Celery, signals, states

from sfnode import channel, retention, supervise, warm
from sfnode.broker import (HEALTH_TASK, RESULT_EXPIRES_SECONDS, RUN_JOB_TASK, TASKS,
                           WIRE_SETTINGS, transport_options)
from sfnode.config import ConfigError, NodeConfig, redact_url
from sfnode.federation import FederationError, check_node, load_federation
from sfnode.journal import Journal, digest
from sfnode.runner import REMOTE_ERROR
from sfnode.health import probe_ray, versions

_config: NodeConfig | None = None


def node_config() -> NodeConfig:
    """This node's configuration, read from the environment on first use."""
    global _config
    if _config is None:
        _config = NodeConfig.from_mapping(os.environ)
    return _config


def celery_settings(config: NodeConfig) -> dict[str, Any]:
    return {
        "broker_url": config.redis_url,
        "result_backend": config.result_backend_url,
        "task_default_queue": config.celery_queue,
        "task_routes": {task: {"queue": config.celery_queue} for task in TASKS},
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_track_started": True,
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": config.worker_concurrency,
        "broker_transport_options": transport_options(),
        "result_backend_transport_options": transport_options(),
        "result_expires": RESULT_EXPIRES_SECONDS,
        "result_extended": True,
        **WIRE_SETTINGS,
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
    }


def create_app(config: NodeConfig | None = None) -> Celery:
    celery_app = Celery("sfnode", set_as_current=False)
    if config is not None:
        celery_app.conf.update(celery_settings(config))
    return celery_app


app = create_app()


def use_config(config: NodeConfig | None) -> None:
    """Configure the app and the tasks from ``config`` (None: re-read the environment later)."""
    global _config
    _config = config
    if config is not None:
        app.conf.update(celery_settings(config))


# Configured at import, from the environment systemd gives the worker. When it
# is incomplete the module still imports (the CLI and tests configure it
# themselves), but a worker refuses to start, listing every problem.
_startup_error: ConfigError | None = None
try:
    use_config(NodeConfig.from_mapping(os.environ))
except ConfigError as _exc:
    _startup_error = _exc


@signals.worker_init.connect
def _refuse_to_start_unconfigured(**_: Any) -> None:
    if _config is None:
        error = _startup_error or ConfigError(["no configuration"])
        print(f"sfnode worker cannot start: {error}", file=sys.stderr, flush=True)
        raise SystemExit(78)  # EX_CONFIG; Celery's signal dispatch swallows Exceptions


@signals.worker_ready.connect
def _answer_abandoned_jobs(**_: Any) -> None:
    """Jobs whose previous worker died mid-run are answered as failed.

    The submitter sends each job under its job id as the task id, so the
    answer stored here reaches whoever still waits for it.
    """
    if _config is None:
        return

    def answered(job_id: str) -> bool:
        return app.backend.get_task_meta(job_id).get("status") != states.PENDING

    retention.prune(_config)
    for answer in supervise.reap_abandoned(_config, answered, RESULT_EXPIRES_SECONDS):
        app.backend.store_result(answer["job_id"], answer, states.SUCCESS)
        what = ("had finished but its answer was never stored; answered from its result"
                if answer.get("recovered") else "was abandoned by a stopped worker; answered as failed")
        print(f"sfnode: job {answer['job_id']} {what} (phase {answer['phase']!r})",
              file=sys.stderr, flush=True)


def _journal_and_fail_fast(config: NodeConfig, spec: dict[str, Any],
                           answer: dict[str, Any]) -> None:
    job_id = spec.get("job_id")
    if not isinstance(job_id, str) or answer.get("replayed"):
        return
    journal = Journal(config.journal_path, config.node_id)
    ok = bool(answer.get("ok"))
    try:
        journal.record("ended", job_id=job_id, kind=spec.get("kind"), ok=ok,
                       phase=answer.get("phase"),
                       result_digest=digest(answer.get("result")) if ok else None,
                       error=None if ok else str(answer.get("error"))[:channel.MAX_REASON_CHARS],
                       by=answer.get("cancelled_by"))
    except OSError as exc:  # the peers are still told
        print(f"sfnode: the journal {config.journal_path} took no entry: {exc}",
              file=sys.stderr, flush=True)
    if ok or answer.get("cancelled_by") or answer.get("reused"):
        return  # a job another party ended needs no word back; a reused id is not that job
    # A failure that a peer's own error brought here (rayfed passes it on) is that peer's
    # to report: told to end, it could take the word for the cause before its own error
    # is written. The others are told.
    origins = set(REMOTE_ERROR.findall(str(answer.get("error", ""))))
    parties = [p for p in channel.job_parties(spec) if p not in origins]
    # the phase only: this party's error text (paths, columns) stays in its own journal
    channel.tell_peers_to_end(config, load_federation(config.federation_file), job_id, parties,
                              f"its part failed in phase "
                              f"{answer.get('phase')}", journal)


# The runner waiting for this pool process's next job (it runs one job at a time).
_standby = supervise.Standby()


@signals.worker_process_init.connect
def _prepare_first_job(**_: Any) -> None:
    """In each pool process as it starts: a runner for the first job, the warm workers."""
    if _config is None:
        return
    with contextlib.suppress(ImportError):
        warm.load_stubs()  # imported now, not in the first job's time
    supervise.prepare_next(_config, _standby)


@signals.task_postrun.connect
def _after_job(sender: Any = None, args: Any = None, retval: Any = None, **_: Any) -> None:
    """After a job's answer is stored (not in the submitter's time): the journal; a job
    that failed here is ended on its other parties (fail fast); old work dirs pruned, so
    the disk never fills between worker starts; the warm workers and a runner for the
    next job."""
    if _config is None or getattr(sender, "name", None) != RUN_JOB_TASK:
        return
    spec = args[0] if isinstance(args, (list, tuple)) and args else None
    if isinstance(spec, dict) and isinstance(retval, dict):
        with contextlib.suppress(Exception):  # a job that never got a work dir ended too
            channel.note_end(_config, str(spec.get("job_id")), retval)
        with contextlib.suppress(Exception):  # the journal and peers never break the worker
            _journal_and_fail_fast(_config, spec, retval)
    with contextlib.suppress(OSError):
        retention.prune(_config, keep=[spec.get("job_id")] if isinstance(spec, dict) else [])
    supervise.prepare_next(_config, _standby)


@signals.worker_process_shutdown.connect
def _end_standby(**_: Any) -> None:
    _standby.close()


def health_report() -> dict[str, Any]:
    """What ``sfnode.health`` answers: versions, the Ray head's resources, file agreement."""
    config = node_config()
    problems: list[str] = []
    try:
        problems.extend(check_node(config, load_federation(config.federation_file)))
    except FederationError as exc:
        problems.extend(exc.problems)
    ray = probe_ray(config)
    return {
        "ok": not problems and ray.get("resources") is not None,
        "node_id": config.node_id,
        "node_ip": config.node_ip,
        "broker": redact_url(config.redis_url),
        "queue": config.celery_queue,
        "versions": versions(),
        "ray": ray,
        "federation_problems": problems,
    }


def run_job_answer(spec: Any) -> dict[str, Any]:
    """What ``sfnode.run_job`` answers; a bad spec or configuration is an answer, never raised."""
    try:
        config = node_config()
    except ConfigError as exc:
        return {"ok": False, "phase": "validate", "error": str(exc), "problems": exc.problems}
    if isinstance(spec, dict) and isinstance(spec.get("job_id"), str):
        with contextlib.suppress(Exception):  # the journal never keeps a job from running
            Journal(config.journal_path, config.node_id).record(
                "started", job_id=spec["job_id"], kind=str(spec.get("kind")),
                parties=channel.job_parties(spec), spec_digest=digest(spec))
    try:
        return supervise.run_job(spec, config, standby=_standby)
    except Exception as exc:  # noqa: BLE001  the caller always gets a dict
        return {"ok": False, "job_id": spec.get("job_id") if isinstance(spec, dict) else None,
                "party": config.node_id, "phase": "supervise",
                "error": f"{type(exc).__name__}: {exc}", "problems": []}


health = app.task(name=HEALTH_TASK)(health_report)
run_job = app.task(name=RUN_JOB_TASK)(run_job_answer)

"""The ``sfnode`` command: health, submit, validate and expand.

argparse rather than click keeps this command out of the click pin that Ray
and Celery share. Exit codes: 0 success, 1 the job or check failed, 2 a usage
or configuration error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sfnode import catalogue
from sfnode.broker import HEALTH_TASK, RUN_JOB_TASK, client_settings
from sfnode.components import describe
from sfnode.config import DEFAULT_ENV_FILE, ConfigError, NodeConfig, redact_url
from sfnode.federation import FederationError, load_federation
from sfnode.spec import SpecError, expand_spec, validate_spec

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# How much longer than the job's deadline the submitter waits for results.
RESULT_MARGIN_SECONDS = 120


class UsageError(Exception):
    pass


def _print_json(data: Any, sort_keys: bool = True) -> None:
    print(json.dumps(data, indent=2, sort_keys=sort_keys))


def _config(args: argparse.Namespace) -> NodeConfig:
    return NodeConfig.from_env_file(args.env_file)


def _read_spec(path: Path) -> Any:
    """A spec from a file, or from standard input for ``-``."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
        return json.loads(text)
    except OSError as exc:
        raise UsageError(f"cannot read job spec {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise UsageError(f"job spec {path} is not valid JSON: {exc}") from exc


def _expanded(args: argparse.Namespace, config: NodeConfig) -> dict[str, Any]:
    federation = load_federation(config.federation_file)
    return expand_spec(_read_spec(args.spec), federation, config.job_deadline_seconds)


def _parse_party_urls(items: Sequence[str], option: str) -> dict[str, str]:
    """``PARTY=URL`` (a URL without a password) or ``PARTY=@FILE`` (the URL read from FILE):
    a password on the command line would show in ``ps`` and shell histories."""
    urls: dict[str, str] = {}
    for item in items:
        party, sep, url = item.partition("=")
        if not sep or not party or not url:
            raise UsageError(f"{option} {item!r} is not PARTY=@FILE (a file holding the URL, "
                             f"e.g. redis://:PASSWORD@host:port/0) or PARTY=URL")
        if url.startswith("@"):
            try:
                url = Path(url[1:]).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise UsageError(f"{option} {party}=@{url[1:]}: cannot read the URL file: "
                                 f"{exc.strerror or exc}") from exc
        elif urlsplit(url).password is not None:
            raise UsageError(f"{option} {party}={redact_url(url)}: a password on the command line "
                             f"shows in ps and shell histories; put the URL in a file readable "
                             f"only by you and give {option} {party}=@FILE")
        urls[party] = url
    return urls


def cmd_validate(args: argparse.Namespace) -> int:
    config = _config(args)
    federation = load_federation(config.federation_file)
    spec = expand_spec(_read_spec(args.spec), federation, config.job_deadline_seconds)
    validate_spec(spec, config, federation)
    print(f"job spec {spec['job_id']!r} ({spec['kind']}) is valid on party {config.node_id}")
    return EXIT_OK


def cmd_components(args: argparse.Namespace) -> int:
    """The components this node's SecretFlow offers (one per line), or one in full (JSON)."""
    found = catalogue.load().components
    if args.component:
        key = args.component.split(":", 1)[0]
        if key not in found:
            raise UsageError(f"{args.component!r} is not a component of this node's SecretFlow; "
                             "`sfnode components` lists them")
        _print_json(describe(found, key), sort_keys=False)
        return EXIT_OK
    for key, definition in found.items():
        summary = str(definition.get("desc", "")).strip().splitlines()
        tested = "  (tested here)" if key in catalogue.TESTED else ""
        print(f"{key}:{definition.get('version', '')}  {summary[0] if summary else ''}{tested}")
    return EXIT_OK


def cmd_expand(args: argparse.Namespace) -> int:
    _print_json(_expanded(args, _config(args)))
    return EXIT_OK


def _client(broker: str, backend: str, queue: str) -> Any:
    from celery import Celery

    client = Celery("sfnode-cli", set_as_current=False)
    client.conf.update(client_settings(broker, backend, queue))
    return client


def cmd_health(args: argparse.Namespace) -> int:
    config = _config(args)
    answer = _call(config.redis_url, config.result_backend_url, config.celery_queue,
                   HEALTH_TASK, [], args.timeout)
    if not answer.get("ok") and "node_id" not in answer:
        answer = {"node_id": config.node_id, **answer,
                  "error": f"no health answer from the worker behind "
                           f"{redact_url(config.redis_url)} (queue {config.celery_queue}): "
                           f"{answer.get('error')}"}
    _print_json(answer)
    return EXIT_OK if answer.get("ok") else EXIT_FAILED


def _call(broker: str, backend: str, queue: str, task: str, task_args: list[Any],
          timeout: float) -> dict[str, Any]:
    """Send one task and wait for its answer (one party's broker)."""
    return _call_many({"_": (broker, backend)}, queue, task, task_args, timeout)["_"]


def _wait_for(async_result: Any, give_up: float) -> dict[str, Any] | None:
    """One party's answer, as soon as its worker stores it (the result backend tells its
    subscribers: no polling); None when ``give_up`` (monotonic) passes first."""
    from celery.exceptions import TimeoutError as CeleryTimeout  # noqa: PLC0415

    while (remaining := give_up - time.monotonic()) > 0:
        try:
            answer = async_result.get(timeout=remaining, propagate=False)
        except CeleryTimeout:
            return None
        except Exception:  # noqa: BLE001  transient backend trouble: try again
            time.sleep(min(0.5, max(0.0, give_up - time.monotonic())))
            continue
        return (answer if isinstance(answer, dict)
                else {"ok": False, "error": f"task failed: {answer!r}"})
    return None


def _call_many(targets: dict[str, tuple[str, str]], queue: str, task: str,
               task_args: list[Any], timeout: float,
               task_id: str | None = None) -> dict[str, dict[str, Any]]:
    """Send ``task`` through each party's broker and wait for all answers.

    Celery's result objects live only inside this function: their finalizers
    unsubscribe from Redis, which must happen before interpreter shutdown.
    """
    pending = {}
    results: dict[str, dict[str, Any]] = {}
    clients = []
    for party, (broker, backend) in targets.items():
        client = _client(broker, backend, queue)
        clients.append(client)
        try:
            pending[party] = client.send_task(task, args=task_args, queue=queue, task_id=task_id)
        except Exception as exc:  # noqa: BLE001
            results[party] = {"ok": False, "error": f"could not send {task} to "
                                                    f"{redact_url(broker)}: "
                                                    f"{type(exc).__name__}: {exc}"}
    give_up = time.monotonic() + timeout
    for party, async_result in list(pending.items()):
        answer = _wait_for(async_result, give_up)
        if answer is not None:
            results[party] = answer
            del pending[party]
    for party, async_result in pending.items():
        results[party] = {"ok": False, "error": f"no answer within {timeout:.0f} s (task "
                                                f"{async_result.id} is still queued or running)"}
    pending.clear()
    for client in clients:
        with contextlib.suppress(Exception):  # best effort
            client.close()
    return results


def cmd_submit(args: argparse.Namespace) -> int:
    config = _config(args)
    spec = _expanded(args, config)
    parties = [p.get("id") for p in spec.get("parties", []) if isinstance(p, dict)]
    brokers = _parse_party_urls(args.broker, "--broker")
    backends = _parse_party_urls(args.backend, "--backend")
    if not brokers:
        brokers = {config.node_id: config.redis_url}
    targets: dict[str, tuple[str, str]] = {}
    for party, broker in brokers.items():
        if party not in parties:
            raise UsageError(f"--broker {party}=...: {party!r} is not a party of job "
                             f"{spec.get('job_id')!r} (parties: {', '.join(parties)})")
        backend = backends.get(party)
        if backend is None and party == config.node_id and broker == config.redis_url:
            backend = config.result_backend_url
        if backend is None:
            raise UsageError(f"--broker {party}=... needs --backend {party}=@FILE: the result "
                             f"backend of {party}'s worker (its RESULT_BACKEND_URL)")
        targets[party] = (broker, backend)

    deadline = spec.get("deadline_seconds") or config.job_deadline_seconds
    timeout = args.timeout if args.timeout is not None else deadline + RESULT_MARGIN_SECONDS
    # The job id is the task id on every party (each has its own backend): a
    # worker that restarts after losing a job can still answer its submitter.
    job_id = spec.get("job_id")
    results = _call_many(targets, config.celery_queue, RUN_JOB_TASK, [spec], timeout,
                         task_id=job_id if isinstance(job_id, str) and job_id else None)
    for party, answer in results.items():
        answer.setdefault("party", party)
    ok = bool(results) and all(r.get("ok") for r in results.values())
    _print_json({"job_id": spec.get("job_id"), "ok": ok, "results": results})
    return EXIT_OK if ok else EXIT_FAILED


def cmd_prune(args: argparse.Namespace) -> int:
    from sfnode.retention import prune

    removed = prune(_config(args))
    _print_json({"removed": [str(path) for path in removed]})
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from sfnode.status import node_status, parse_expect

    try:
        expect = parse_expect(args.expect)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    report = node_status(_config(args), expect=expect)
    _print_json(report, sort_keys=False)  # units in SERVICE_UNITS order (start order)
    return EXIT_OK if report["ok"] else EXIT_FAILED


# --- between organisations: the job channel -------------------------------------------------


def _journal(config: NodeConfig) -> Any:
    from sfnode.journal import Journal

    return Journal(config.journal_path, config.node_id)


def cmd_audit(args: argparse.Namespace) -> int:
    for entry in _journal(_config(args)).entries(args.job):
        print(json.dumps(entry, sort_keys=True))
    return EXIT_OK


def _checked_job_id(job_id: str) -> str:
    from sfnode.spec import JOB_ID_PATTERN, JOB_ID_RE

    if not JOB_ID_RE.fullmatch(job_id):
        raise UsageError(f"{job_id!r} is not a job id; expected {JOB_ID_PATTERN}")
    return job_id


def _service_user(config: NodeConfig) -> NodeConfig:
    """The commands that write the job directory run as the user that owns it (the worker's):
    files root made there could not be read by the worker, and a cancellation would be
    ignored."""
    try:
        owner = config.job_dir.stat().st_uid
    except OSError as exc:
        raise UsageError(f"cannot reach the job directory {config.job_dir}: "
                         f"{exc.strerror or exc}") from exc
    if os.geteuid() != owner:
        import pwd

        try:
            name = pwd.getpwuid(owner).pw_name
        except KeyError:
            name = str(owner)
        raise UsageError(f"run this as the worker's user {name!r}, who owns {config.job_dir} "
                         f"(for example: runuser -u {name} -- sfnode ...)")
    return config


def _peers_of(config: NodeConfig, job_id: str) -> tuple[Any, list[str]]:
    from sfnode.channel import job_parties, known_job

    spec, record = known_job(config, job_id)
    return record, job_parties(spec)


def cmd_job(args: argparse.Namespace) -> int:
    """Every party's state of a job, as far as each lets this party see it."""
    from sfnode import jobdir
    from sfnode.channel import call_peers, channel_peers, job_state
    from sfnode.jobdir import read_json

    config = _config(args)
    record, parties = _peers_of(config, _checked_job_id(args.job_id))
    if not parties:
        raise UsageError(f"party {config.node_id} knows no job {args.job_id!r}")
    federation = load_federation(config.federation_file)
    states: dict[str, Any] = {config.node_id: job_state(config, args.job_id, record)}
    # this party's own error in full (peers learn only the phase, and who ended a job)
    mine = read_json(jobdir.workdir(config.job_dir, args.job_id) / jobdir.RESULT_NAME)
    if isinstance(mine, dict) and mine.get("final") and not mine.get("ok") and mine.get("error"):
        states[config.node_id]["error"] = mine["error"]
    peers = channel_peers(config, federation, parties)
    answers = call_peers(config, {pid: ("GET", peer, f"/jobs/{args.job_id}", None)
                                  for pid, peer in peers.items()})
    for pid in parties:
        if pid == config.node_id:
            continue
        answer = answers.get(pid, {"ok": False, "error": f"party {pid} has no job channel"})
        states[pid] = ({k: v for k, v in answer.items() if k != "ok"} if answer.get("ok")
                       else {"party": pid, "state": "unknown", "error": answer.get("error")})
    _print_json({"job_id": args.job_id, "parties": states})
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    """End a job here and on every other party of it."""
    from sfnode.channel import tell_peers_to_end
    from sfnode.jobdir import write_cancel

    config = _service_user(_config(args))
    _record, parties = _peers_of(config, _checked_job_id(args.job_id))
    reason = args.reason or f"cancelled by the operator of party {config.node_id}"
    write_cancel(config.job_dir, args.job_id, config.node_id, reason)
    journal = _journal(config)
    journal.record("cancel_sent", job_id=args.job_id, peer=config.node_id, reason=reason)
    told = tell_peers_to_end(config, load_federation(config.federation_file), args.job_id,
                             parties, reason, journal)
    _print_json({"job_id": args.job_id, "ended_here": True,
                 "told": {pid: bool(a.get("ok")) for pid, a in told.items()},
                 "errors": {pid: a.get("error") for pid, a in told.items() if not a.get("ok")}})
    return EXIT_OK if all(a.get("ok") for a in told.values()) else EXIT_FAILED


def _decide_waiting(args: argparse.Namespace, outcome: str) -> int:
    """A person's decision on a proposal that waits for one. An approved job runs once its
    initiator has every party's consent and starts it."""
    from sfnode.channel import PROPOSALS_DIR
    from sfnode.jobdir import read_json, write_cancel, write_json_atomic

    config = _service_user(_config(args))
    path = config.job_dir / PROPOSALS_DIR / f"{_checked_job_id(args.job_id)}.json"
    record = read_json(path)
    if not isinstance(record, dict) or record.get("outcome") != "waiting":
        state = record.get("outcome") if isinstance(record, dict) else "unknown"
        raise UsageError(f"job {args.job_id!r} does not wait for a decision on party "
                         f"{config.node_id} (it is {state})")
    who = os.environ.get("SUDO_USER") or os.environ.get("USER") or "the operator"
    reason = args.reason or f"{outcome} by {who} on party {config.node_id}"
    record.update(outcome=outcome, rule="operator", reason=reason)
    write_json_atomic(path, record)
    _journal(config).record("approved" if outcome == "accepted" else "refused",
                            job_id=args.job_id, peer=record.get("initiator"), by=who,
                            reason=reason)
    if outcome != "accepted":  # nothing of it may start here
        write_cancel(config.job_dir, args.job_id, config.node_id, reason)
    _print_json({"job_id": args.job_id, "party": config.node_id, "outcome": outcome,
                 "reason": reason})
    return EXIT_OK


def cmd_propose(args: argparse.Namespace) -> int:
    """Propose a job to its other parties; once every one has accepted, start it on each
    of them, run this party's part here and show every party's outcome."""
    from sfnode.channel import (PROPOSALS_DIR, call_peers, channel_peers, job_parties,
                                tell_peers_to_end)
    from sfnode.journal import digest
    from sfnode.jobdir import read_json, write_cancel, write_json_atomic

    config = _service_user(_config(args))
    federation = load_federation(config.federation_file)
    spec = _expanded(args, config)
    validate_spec(spec, config, federation)
    me, job_id = config.node_id, spec["job_id"]
    if (config.job_dir / PROPOSALS_DIR / f"{job_id}.json").exists():
        raise UsageError(f"job id {job_id!r} was already proposed from party {me}; job ids "
                         "are single-use")
    parties = job_parties(spec)
    if me not in parties:
        raise UsageError(f"party {me} proposes only jobs it is a party of (parties: "
                         f"{', '.join(parties)})")
    peers = channel_peers(config, federation, parties)
    unreachable = [p for p in parties if p != me and p not in peers]
    if unreachable:
        raise UsageError(f"no job channel to {', '.join(unreachable)}: their cards carry no "
                         "channel_port (or this node runs without TLS); use sfnode submit "
                         "--broker for a federation run by one administrator")
    journal = _journal(config)
    record = config.job_dir / PROPOSALS_DIR / f"{job_id}.json"
    record.parent.mkdir(mode=0o750, exist_ok=True)
    write_json_atomic(record, {"job_id": job_id, "initiator": me, "spec": spec,
                               "outcome": "accepted", "rule": "initiator",
                               "reason": f"proposed by party {me}"})
    answers = call_peers(config, {pid: ("POST", peer, "/proposals", {"spec": spec})
                                  for pid, peer in peers.items()})
    for pid, answer in answers.items():
        journal.record("proposal_sent", job_id=job_id, peer=pid, kind=spec["kind"],
                       spec_digest=digest(spec), outcome=answer.get("outcome"),
                       rule=answer.get("rule"), reason=answer.get("reason") or answer.get("error"))
    decisions = {pid: _decision_of(a) for pid, a in answers.items()}
    give_up = time.monotonic() + (args.decision_timeout if args.decision_timeout is not None
                                  else spec["deadline_seconds"])
    while (any(d.get("outcome") == "waiting" for d in decisions.values())
           and all(d.get("outcome") in ("accepted", "waiting") for d in decisions.values())
           and time.monotonic() < give_up):
        time.sleep(1.0)
        waiting = {pid: peers[pid] for pid, d in decisions.items()
                   if d.get("outcome") == "waiting"}
        states = call_peers(config, {pid: ("GET", peer, f"/jobs/{job_id}", None)
                                     for pid, peer in waiting.items()})
        for pid, state in states.items():
            decision = state.get("decision") if state.get("ok") else None
            if isinstance(decision, dict) and state.get("state") != "waiting":
                decisions[pid] = {"party": pid, "outcome": decision.get("outcome"),
                                  "rule": decision.get("rule"), "reason": decision.get("reason")}
    why = ""
    if not all(d.get("outcome") == "accepted" for d in decisions.values()):
        refused = {pid: d for pid, d in decisions.items() if d.get("outcome") != "accepted"}
        why = "; ".join(f"party {pid} {d['outcome']}"
                        + (f" ({d.get('rule')}): {d.get('reason')}" if d.get("rule") else
                           f": {d.get('reason')}") for pid, d in refused.items())
    else:  # every party accepted: each runs its part now, this one too
        starts = call_peers(config, {pid: ("POST", peer, f"/jobs/{job_id}/start", {})
                                     for pid, peer in peers.items()})
        for pid, answer in starts.items():
            journal.record("start_sent", job_id=job_id, peer=pid,
                           outcome="started" if answer.get("ok") else "not started",
                           error=None if answer.get("ok") else str(answer.get("error")))
        failed = {pid: a for pid, a in starts.items() if not a.get("ok")}
        why = "; ".join(f"party {pid} could not start it: {a.get('error')}"
                        for pid, a in failed.items())
    if why:
        tell_peers_to_end(config, federation, job_id, parties, why, journal)
        write_cancel(config.job_dir, job_id, me, why)  # nothing of it starts here either
        _print_json({"job_id": job_id, "ok": False, "decisions": decisions,
                     "error": f"job {job_id} does not run: {why}"})
        return EXIT_FAILED
    write_json_atomic(record, {**(read_json(record) or {}), "started_at": round(time.time(), 3)})
    deadline = spec["deadline_seconds"]
    results = _call_many({me: (config.redis_url, config.result_backend_url)},
                         config.celery_queue, RUN_JOB_TASK, [spec],
                         deadline + RESULT_MARGIN_SECONDS, task_id=job_id)
    states = call_peers(config, {pid: ("GET", peer, f"/jobs/{job_id}", None)
                                 for pid, peer in peers.items()})
    ok = all(r.get("ok") for r in results.values())
    _print_json({"job_id": job_id, "ok": ok, "decisions": decisions, "results": results,
                 "parties": {pid: {k: v for k, v in s.items() if k != "ok"}
                             for pid, s in states.items()}})
    return EXIT_OK if ok else EXIT_FAILED


def _decision_of(answer: dict[str, Any]) -> dict[str, Any]:
    if not answer.get("ok"):
        return {"outcome": "unreachable", "reason": answer.get("error")}
    return {k: answer.get(k) for k in ("party", "outcome", "rule", "reason")}


def cmd_approve(args: argparse.Namespace) -> int:
    return _decide_waiting(args, "accepted")


def cmd_refuse(args: argparse.Namespace) -> int:
    return _decide_waiting(args, "refused")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sfnode", description="SecretFlow federation node")
    sub = parser.add_subparsers(dest="command", required=True)
    default_env = os.environ.get("SFNODE_ENV_FILE", DEFAULT_ENV_FILE)

    def with_env(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--env-file", type=Path, default=Path(default_env),
                       help=f"node env file (default: {default_env})")
        return p

    p = with_env(sub.add_parser("health", help="ask this node's worker for its health"))
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default 120)")
    p.set_defaults(func=cmd_health)

    p = with_env(sub.add_parser("submit", help="send a job to the participants' workers"))
    p.add_argument("spec", type=Path, help="job spec (short or full) JSON file")
    p.add_argument("--broker", action="append", default=[], metavar="PARTY=@FILE",
                   help="send to this party's broker, PARTY=@FILE with the URL in FILE (repeatable; "
                        "default: only this node's)")
    p.add_argument("--backend", action="append", default=[], metavar="PARTY=@FILE",
                   help="result backend of a --broker party (default for this node: "
                        "RESULT_BACKEND_URL)")
    p.add_argument("--timeout", type=float, default=None,
                   help=f"seconds to wait for results (default: deadline + "
                        f"{RESULT_MARGIN_SECONDS})")
    p.set_defaults(func=cmd_submit)

    p = with_env(sub.add_parser("status", help="this node's units, broker, Ray head, worker, "
                                               "sockets and reach of its peers (JSON)"))
    p.add_argument("--expect", action="append", default=[], metavar="NAME=ADDRESS:PORT",
                   help="a socket that must listen, besides Redis and the Ray GCS (repeatable)")
    p.set_defaults(func=cmd_status)

    p = with_env(sub.add_parser("prune", help="remove finished jobs' work dirs and Ray's old "
                                              "session logs past the node's retention"))
    p.set_defaults(func=cmd_prune)

    p = with_env(sub.add_parser("validate", help="validate a job spec on this node"))
    p.add_argument("spec", type=Path)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("components", help="the SecretFlow components pipelines may use, or one "
                                          "with its attributes, inputs and outputs (JSON)")
    p.add_argument("component", nargs="?", default=None, metavar="DOMAIN/NAME[:VERSION]")
    p.set_defaults(func=cmd_components)

    p = with_env(sub.add_parser("expand", help="print the full form of a short job spec"))
    p.add_argument("spec", type=Path)
    p.set_defaults(func=cmd_expand)

    p = with_env(sub.add_parser("audit", help="print this node's audit journal (JSON lines)"))
    p.add_argument("--job", default=None, metavar="JOB_ID", help="only the entries of this job")
    p.set_defaults(func=cmd_audit)

    p = with_env(sub.add_parser("propose", help="propose a job to its other parties over the "
                                                "job channel, then run this party's part"))
    p.add_argument("spec", type=Path, help="job spec (short or full) JSON file; - reads it from standard input")
    p.add_argument("--decision-timeout", type=float, default=None,
                   help="seconds to wait for decisions by a person (default: the deadline)")
    p.set_defaults(func=cmd_propose)

    p = with_env(sub.add_parser("job", help="every party's state of a job (JSON)"))
    p.add_argument("job_id")
    p.set_defaults(func=cmd_job)

    p = with_env(sub.add_parser("cancel", help="end a job here and on its other parties"))
    p.add_argument("job_id")
    p.add_argument("--reason", default=None, help="why (shown to every party of the job)")
    p.set_defaults(func=cmd_cancel)

    for name, func, text in (("approve", cmd_approve, "run a proposal that waits for a person"),
                             ("refuse", cmd_refuse, "refuse a proposal that waits for a person")):
        p = with_env(sub.add_parser(name, help=text))
        p.add_argument("job_id")
        p.add_argument("--reason", default=None, help="why (shown to the proposer)")
        p.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SpecError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_FAILED
    except (ConfigError, FederationError, UsageError) as exc:
        print(f"sfnode {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())

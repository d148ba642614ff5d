"""The job channel: how nodes of different organisations propose, decide and end jobs.

Each node serves a small HTTPS API (aiohttp) on ``CHANNEL_PORT``, open in its
firewall to its peers only. TLS is mutual: the node presents its party
certificate, and takes a caller only with a certificate of a party of its own
federation file (chained to that party's trust anchor, and equal to the
certificate the file holds for it: a certificate its CA signed for another
host is no party's). The caller's party is who it is: nothing in a body says
who is calling.

The API (JSON bodies, at most ``MAX_BODY_BYTES``; an unknown field is refused):

- ``POST /v1/proposals`` ``{"spec": FULL_SPEC}``: the caller proposes a job
  it is a party of. This node validates the spec as its worker would, lets
  its policy decide (``sfnode.policy``) and writes the proposal and the
  decision to its journal. The answer:
  ``{"party", "job_id", "outcome": accepted|refused|waiting, "rule", "reason"}``.
  Nothing runs yet: a party that accepted keeps no slot while another still
  decides.
- ``POST /v1/jobs/JOB_ID/start`` ``{}``: the initiator, once every party has
  accepted, has this node queue its part on its own worker (once; a second
  start changes nothing). Only the initiator may, and only for a job this
  party accepted (a person's approval included) and nobody ended.
- ``GET /v1/jobs/JOB_ID``: this party's state of a job the caller is a party
  of (a job of others does not exist for it: 404).
- ``POST /v1/jobs/JOB_ID/cancel`` ``{"reason": TEXT}``: a party of the job
  ends it here: a queued job never starts, a running one is killed by its
  supervisor (``sfnode.supervise``, within its poll interval).

Every refused call is answered with ``{"error": ...}`` and journalled; the
server keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from sfnode import jobdir
from sfnode.config import NodeConfig
from sfnode.federation import Federation, Party
from sfnode.jobdir import RESULT_NAME, STATUS_NAME, read_json, write_json_atomic
from sfnode.journal import Journal, digest
from sfnode.policy import ACCEPTED, REFUSED, Decision, Policy, decide
from sfnode.spec import JOB_ID_RE, SpecError, validate_spec

API = "/v1"
MAX_BODY_BYTES = 1024 * 1024
PROPOSALS_DIR = ".proposals"
MAX_REASON_CHARS = 2000
# States in which a peer's job counts against its max_concurrent_jobs here.
LIVE = ("accepted", "queued", "waiting", "running")
# A proposal older than its deadline and this is no longer live, whatever its files say.
LIVE_MARGIN_SECONDS = 300

Enqueue = Callable[[dict[str, Any]], None]
PEER_KEY = web.RequestKey("peer", str)  # the calling party, set on each request by the guard


@dataclass
class ChannelNode:
    """What the server needs of its node: its config, federation, policy and journal, and
    how an accepted job reaches its worker."""

    config: NodeConfig
    federation: Federation
    policy: Policy
    journal: Journal
    enqueue: Enqueue
    certificates: Mapping[bytes, str] = field(default_factory=dict)  # DER -> party id
    _lock: asyncio.Lock | None = None

    def __post_init__(self) -> None:
        if not self.certificates:
            self.certificates = party_certificates(self.federation, self.config.node_id)

    @property
    def me(self) -> str:
        return self.config.node_id

    def proposal_path(self, job_id: str) -> Path:
        return self.config.job_dir / PROPOSALS_DIR / f"{job_id}.json"

    @property
    def lock(self) -> asyncio.Lock:
        """Serialises proposals (made in the server's loop, on first use)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock


def party_certificates(federation: Federation, me: str) -> dict[bytes, str]:
    """Each peer's certificate (DER) and its party: who a caller is."""
    found: dict[bytes, str] = {}
    for party in federation.parties:
        if party.id != me and party.certificate:
            found[ssl.PEM_cert_to_DER_cert(party.certificate.strip())] = party.id
    return found


def trust_anchors(federation: Federation, me: str) -> str:
    """The PEM trust anchors of every peer (a CA shared by several parties once)."""
    anchors: list[str] = []
    for party in federation.parties:
        anchor = party.trust_anchor
        if party.id != me and anchor and anchor.strip() not in anchors:
            anchors.append(anchor.strip())
    return "\n".join(anchors) + "\n"


def server_context(config: NodeConfig, federation: Federation) -> ssl.SSLContext:
    """TLS of the server: this party's certificate; a client certificate of a peer required."""
    if config.tls_cert is None or config.tls_key is None:
        raise ValueError(f"party {config.node_id} has no TLS certificate: the job channel "
                         "needs TLS_CERT and TLS_KEY")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(config.tls_cert, config.tls_key)
    anchors = trust_anchors(federation, config.node_id)
    if anchors.strip():  # no peer yet: no handshake can succeed, as it should be
        context.load_verify_locations(cadata=anchors)
    return context


def client_context(config: NodeConfig, peer: Party) -> ssl.SSLContext:
    """TLS of a call to ``peer``: this party's certificate; only ``peer``'s anchor trusted,
    and its certificate must name the address dialled (its IP)."""
    if config.tls_cert is None or config.tls_key is None or peer.trust_anchor is None:
        raise ValueError(f"the job channel between {config.node_id} and {peer.id} needs "
                         "TLS on both")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.tls_cert, config.tls_key)
    context.load_verify_locations(cadata=peer.trust_anchor)
    return context


# --- the server ---------------------------------------------------------------------------


class Refusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def make_app(node: ChannelNode) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_guard(node)])
    app.add_routes([
        web.post(f"{API}/proposals", _handler(node, _propose)),
        web.get(f"{API}/jobs/{{job_id}}", _handler(node, _job_state)),
        web.post(f"{API}/jobs/{{job_id}}/cancel", _handler(node, _cancel)),
        web.post(f"{API}/jobs/{{job_id}}/start", _handler(node, _start)),
    ])
    return app


def _caller(request: web.Request, node: ChannelNode) -> str | None:
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return node.certificates.get(der) if der else None


def _guard(node: ChannelNode) -> Any:
    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        peer = _caller(request, node)
        try:
            if peer is None:
                raise Refusal(403, f"party {node.me} takes calls only from the parties of its "
                                   "federation: this certificate is no party's")
            request[PEER_KEY] = peer
            return await handler(request)
        except Refusal as refusal:
            return _refused(node, peer, request, refusal.status, str(refusal))
        except web.HTTPRequestEntityTooLarge:
            return _refused(node, peer, request, 413,
                            f"the body is larger than {MAX_BODY_BYTES} bytes")
        except web.HTTPException as exc:
            if exc.status >= 400:
                return _refused(node, peer, request, exc.status, exc.reason)
            raise
        except Exception as exc:  # noqa: BLE001  the node keeps serving
            return _refused(node, peer, request, 500,
                            f"party {node.me} could not take this call ({type(exc).__name__})")
    return guard


def _refused(node: ChannelNode, peer: str | None, request: web.Request, status: int,
             message: str) -> web.Response:
    with contextlib.suppress(Exception):
        node.journal.record("refused_call", peer=peer,
                            reason=f"{request.method} {request.path[:200]}: {status} "
                                   f"{message}"[:MAX_REASON_CHARS])
    return web.json_response({"party": node.me, "error": message}, status=status)


def _handler(node: ChannelNode, action: Callable[..., Any]) -> Any:
    async def handle(request: web.Request) -> web.Response:
        return web.json_response(await action(node, request, request[PEER_KEY]))
    return handle


async def _body(request: web.Request, fields: tuple[str, ...]) -> dict[str, Any]:
    """The JSON object of the request, with exactly ``fields``."""
    raw = await request.read()
    try:
        body = json.loads(raw)
        json.dumps(body, ensure_ascii=False).encode("utf-8")  # no lone surrogates
    except (ValueError, RecursionError) as exc:
        raise Refusal(400, f"the body is not JSON this node takes: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise Refusal(400, "the body is not a JSON object")
    unknown = sorted(set(body) - set(fields))
    missing = sorted(set(fields) - set(body))
    if unknown or missing:
        parts = ([f"unknown field(s) {', '.join(unknown)}"] if unknown else []) + (
            [f"missing field(s) {', '.join(missing)}"] if missing else [])
        raise Refusal(400, f"{'; '.join(parts)}; expected exactly {', '.join(fields)}")
    return body


def _job_id(request: web.Request) -> str:
    job_id = request.match_info["job_id"]
    if not JOB_ID_RE.fullmatch(job_id):
        raise Refusal(400, f"{job_id!r} is not a job id")
    return job_id


async def _propose(node: ChannelNode, request: web.Request, peer: str) -> dict[str, Any]:
    body = await _body(request, ("spec",))
    spec_data = body["spec"]
    job_id = _short(spec_data.get("job_id")) if isinstance(spec_data, dict) else None
    kind = _short(spec_data.get("kind")) if isinstance(spec_data, dict) else None
    await asyncio.to_thread(node.journal.record, "proposal_received", job_id=job_id, peer=peer,
                            kind=kind, spec_digest=digest(spec_data))
    # One proposal at a time: the single-use id and the peer's count of jobs are decided
    # and recorded together.
    async with node.lock:
        # validation opens this party's input files: off the event loop
        decision = await asyncio.to_thread(_decide_and_record, node, spec_data, peer)
    await asyncio.to_thread(node.journal.record, "decision", job_id=job_id, peer=peer,
                            **decision.to_dict())
    return {"party": node.me, "job_id": job_id, **decision.to_dict()}


async def _start(node: ChannelNode, request: web.Request, peer: str) -> dict[str, Any]:
    """The initiator's word that every party accepted: this party's part is queued."""
    job_id = _job_id(request)
    await _body(request, ())
    async with node.lock:  # one start, even when the initiator's call is repeated
        record = await asyncio.to_thread(read_json, node.proposal_path(job_id))
        if not isinstance(record, dict) or peer not in job_parties(record.get("spec")):
            raise Refusal(404, f"party {node.me} has no job {job_id} of party {peer}")
        if record.get("initiator") != peer:
            raise Refusal(403, f"only the initiator of job {job_id}, party "
                               f"{record.get('initiator')}, may start it")
        if record.get("outcome") != ACCEPTED:
            raise Refusal(409, f"job {job_id} is {record.get('outcome')} on party {node.me}, "
                               "not accepted")
        if jobdir.cancellations(node.config.job_dir, job_id):
            raise Refusal(409, f"job {job_id} was ended on party {node.me}")
        if record.get("started_at"):
            return {"party": node.me, "job_id": job_id, "started": True}
        record["started_at"] = round(time.time(), 3)
        await asyncio.to_thread(write_json_atomic, node.proposal_path(job_id), record)
    await asyncio.to_thread(node.journal.record, "start_received", job_id=job_id, peer=peer)
    await asyncio.to_thread(node.enqueue, record["spec"])
    return {"party": node.me, "job_id": job_id, "started": True}


def _short(value: Any, limit: int = 128) -> str | None:
    """A field of a peer's spec as the journal may hold it (a string, bounded)."""
    return value[:limit] if isinstance(value, str) else None


def _decide_and_record(node: ChannelNode, spec_data: Any, peer: str) -> Decision:
    decision = _decide(node, spec_data, peer)
    if decision.outcome != REFUSED:
        path = node.proposal_path(spec_data["job_id"])
        path.parent.mkdir(mode=0o750, exist_ok=True)
        write_json_atomic(path, {"job_id": spec_data["job_id"], "initiator": peer,
                                 "spec": spec_data, **decision.to_dict()})
    return decision


def _decide(node: ChannelNode, spec_data: Any, peer: str) -> Decision:
    """The policy decides before any of this party's files is opened: a peer the policy
    does not allow learns nothing of them (not even whether a path exists)."""
    try:
        spec = validate_spec(spec_data, node.config, node.federation, check_files=False)
    except SpecError as exc:
        return Decision(REFUSED, "spec", f"party {node.me} refuses the spec: {exc}")
    if peer not in spec.party_ids:
        return Decision(REFUSED, "spec", f"party {peer} proposed a job it is not a party of")
    if node.me not in spec.party_ids:
        return Decision(REFUSED, "spec", f"party {node.me} is not a party of this job")
    if node.proposal_path(spec.job_id).exists() or jobdir.workdir(node.config.job_dir,
                                                                   spec.job_id).exists():
        return Decision(REFUSED, "spec", f"job id {spec.job_id} was already used on party "
                        f"{node.me}; job ids are single-use")
    decision = decide(node.policy, spec, peer, _live_jobs_of(node, peer),
                      resolve=lambda path: _inside_data(node.config, path))
    if decision.outcome == REFUSED:
        return decision
    try:  # allowed: now its inputs here are opened and checked
        validate_spec(spec_data, node.config, node.federation)
    except SpecError as exc:
        return Decision(REFUSED, "spec", f"party {node.me} refuses the spec: {exc}")
    return decision


def _inside_data(config: NodeConfig, path: str) -> str | None:
    """What a job's path really names under DATA_DIR (links followed), relative to it;
    None when it leads outside."""
    root = os.path.realpath(config.data_dir)
    real = os.path.realpath(os.path.join(root, path))
    if os.path.commonpath([root, real]) != root:
        return None
    return os.path.relpath(real, root)


def _live_jobs_of(node: ChannelNode, peer: str) -> int:
    """``peer``'s proposals here that may still run: not ended, not cancelled, and younger
    than their deadline (a job that never started, a pruned work dir, cannot hold the
    count for ever)."""
    directory = node.config.job_dir / PROPOSALS_DIR
    if not directory.is_dir():
        return 0
    count, now = 0, time.time()
    for path in directory.glob("*.json"):
        record = read_json(path)
        if not isinstance(record, dict) or record.get("initiator") != peer:
            continue
        spec = record.get("spec") if isinstance(record.get("spec"), dict) else {}
        deadline = spec.get("deadline_seconds") if isinstance(spec.get("deadline_seconds"), int) else 0
        if now - path.stat().st_mtime > deadline + LIVE_MARGIN_SECONDS:
            continue
        state = job_state(node.config, str(record.get("job_id")), record)
        count += state["state"] in LIVE
    return count


def note_end(config: NodeConfig, job_id: str, answer: Mapping[str, Any]) -> None:
    """Record in a proposed job's record how it ended here, when its work dir will not say
    (it ended before it had one: a busy slot, a cancellation before it started): its
    state is then final, and it no longer counts against its proposer's jobs."""
    path = config.job_dir / PROPOSALS_DIR / f"{job_id}.json"
    record = read_json(path) if JOB_ID_RE.fullmatch(job_id) else None
    result = read_json(jobdir.workdir(config.job_dir, job_id) / RESULT_NAME)
    if not isinstance(record, dict) or (isinstance(result, dict) and result.get("final")):
        return
    record["ended"] = {"ok": bool(answer.get("ok")), "phase": answer.get("phase")}
    write_json_atomic(path, record)


def job_state(config: NodeConfig, job_id: str,
              decision: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """This party's state of a job: its decision (a proposed job), then its run."""
    workdir = jobdir.workdir(config.job_dir, job_id)
    status = read_json(workdir / STATUS_NAME) or {}
    result = read_json(workdir / RESULT_NAME) or {}
    state: dict[str, Any] = {"party": config.node_id, "job_id": job_id}
    if decision is not None:
        state["decision"] = {k: decision.get(k) for k in ("outcome", "rule", "reason")}
    ended = decision.get("ended") if decision is not None else None
    if isinstance(result, dict) and result.get("final"):
        state.update(state="done" if result.get("ok") else "failed", phase=result.get("phase"))
        if not result.get("ok") and result.get("cancelled_by"):
            state["ended_by"] = result.get("cancelled_by")
    elif isinstance(ended, dict):  # it ended before it had a work dir
        state.update(state="done" if ended.get("ok") else "failed", phase=ended.get("phase"))
    elif isinstance(status, dict) and status.get("phase"):
        state.update(state="running", phase=status.get("phase"))
    elif decision is not None and decision.get("outcome") == ACCEPTED and decision.get("started_at"):
        state["state"] = "queued"  # started by its initiator, waiting for a worker process
    elif decision is not None:
        state["state"] = str(decision.get("outcome"))  # accepted (not started yet), waiting, refused
    else:
        state["state"] = "queued"  # submitted to this node's worker directly
    if jobdir.cancellations(config.job_dir, job_id) and state["state"] in (
            "accepted", "queued", "waiting", "running"):
        state["state"] = "ending"
    return state


def known_job(config: NodeConfig, job_id: str) -> tuple[Any, dict[str, Any] | None]:
    """A job's spec as this node knows it (a proposal it decided, else the spec its worker
    received) and its proposal record; (None, None) for a job it never saw."""
    record = read_json(config.job_dir / PROPOSALS_DIR / f"{job_id}.json")
    record = record if isinstance(record, dict) else None
    running = read_json(jobdir.workdir(config.job_dir, job_id) / jobdir.SPEC_NAME)
    if isinstance(running, dict):  # what the worker runs decides who may see and end it
        return running, record
    return (record.get("spec") if record else None), record


async def _job_state(node: ChannelNode, request: web.Request, peer: str) -> dict[str, Any]:
    job_id = _job_id(request)
    spec, record = known_job(node.config, job_id)
    if peer not in job_parties(spec):
        raise Refusal(404, f"party {node.me} has no job {job_id} of party {peer}")
    return job_state(node.config, job_id, record)


async def _cancel(node: ChannelNode, request: web.Request, peer: str) -> dict[str, Any]:
    """A job this node knows ends if the caller is one of its parties; one it has not seen
    yet (queued behind others) never starts if the caller turns out to be one."""
    job_id = _job_id(request)
    body = await _body(request, ("reason",))
    reason = body["reason"]
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON_CHARS:
        raise Refusal(400, f"reason is not valid; expected a text of 1..{MAX_REASON_CHARS} "
                           "characters")
    spec, _record = await asyncio.to_thread(known_job, node.config, job_id)
    if spec is not None and peer not in job_parties(spec):
        raise Refusal(404, f"party {node.me} has no job {job_id} of party {peer}")
    if spec is None and len(jobdir.cancellations(node.config.job_dir, job_id)) >= len(
            node.federation.parties):
        raise Refusal(429, f"job {job_id} is already ended by every party there is")
    await asyncio.to_thread(jobdir.write_cancel, node.config.job_dir, job_id, peer, reason)
    await asyncio.to_thread(node.journal.record, "cancel_received", job_id=job_id, peer=peer,
                            reason=reason)
    return {"party": node.me, "job_id": job_id, "cancelled": True, "known": spec is not None}


def job_parties(spec: Any) -> list[str]:
    if not isinstance(spec, dict):
        return []
    return [p["id"] if isinstance(p, dict) else p for p in spec.get("parties") or []
            if isinstance(p, (dict, str))]


# --- the client ---------------------------------------------------------------------------


CALL_TIMEOUT_SECONDS = 5.0


def peer_url(peer: Party, path: str) -> str:
    host = f"[{peer.ip}]" if ":" in peer.ip else peer.ip
    return f"https://{host}:{peer.channel_port}{API}{path}"


async def _call_all(config: NodeConfig,
                    calls: Mapping[str, tuple[str, Party, str, dict[str, Any] | None]],
                    timeout: float) -> dict[str, dict[str, Any]]:
    import aiohttp  # noqa: PLC0415

    async def one(method: str, peer: Party, path: str,
                  body: dict[str, Any] | None) -> dict[str, Any]:
        try:
            connector = aiohttp.TCPConnector(ssl=client_context(config, peer))
            async with aiohttp.ClientSession(
                    connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
                async with session.request(method, peer_url(peer, path), json=body) as response:
                    raw = await response.content.read(MAX_BODY_BYTES + 1)
                    if len(raw) > MAX_BODY_BYTES:
                        return {"ok": False, "error": f"party {peer.id} answered more than "
                                                      f"{MAX_BODY_BYTES} bytes"}
                    answer = json.loads(raw or b"{}")
                    if response.status != 200:
                        return {"ok": False, "status": response.status,
                                "error": (answer or {}).get("error", response.reason)}
                    return {"ok": True, **(answer or {})}
        except Exception as exc:  # noqa: BLE001  a peer that cannot be reached is reported
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    names = list(calls)
    answers = await asyncio.gather(*(one(*calls[name]) for name in names))
    return dict(zip(names, answers))


def call_peers(config: NodeConfig,
               calls: Mapping[str, tuple[str, Party, str, dict[str, Any] | None]],
               timeout: float = CALL_TIMEOUT_SECONDS) -> dict[str, dict[str, Any]]:
    """Make each peer's ``(method, peer, path, body)`` call at once; each peer's answer
    (``ok`` false: it could not be reached, or refused the call, with ``error``)."""
    if not calls:
        return {}
    return asyncio.run(_call_all(config, calls, timeout))


def post_to_peers(config: NodeConfig, calls: Mapping[str, tuple[Party, str, dict[str, Any]]],
                  timeout: float = CALL_TIMEOUT_SECONDS) -> dict[str, dict[str, Any]]:
    """POST each ``(peer, path, body)`` at once (see :func:`call_peers`)."""
    return call_peers(config, {k: ("POST", *v) for k, v in calls.items()}, timeout)


def channel_peers(config: NodeConfig, federation: Federation,
                  parties: list[str]) -> dict[str, Party]:
    """The other parties of a job that this node can reach on a job channel."""
    found = {}
    for pid in parties:
        peer = federation.get(pid)
        if pid != config.node_id and peer is not None and peer.channel_port and config.tls_enabled:
            found[pid] = peer
    return found


def tell_peers_to_end(config: NodeConfig, federation: Federation, job_id: str,
                      parties: list[str], reason: str, journal: Journal | None = None,
                      post: Callable[..., dict[str, dict[str, Any]]] = post_to_peers,
                      ) -> dict[str, dict[str, Any]]:
    """Fail fast: ask every other party of a job that has a job channel to end it."""
    calls = {pid: (peer, f"/jobs/{job_id}/cancel", {"reason": reason[:MAX_REASON_CHARS]})
             for pid, peer in channel_peers(config, federation, parties).items()}
    answers = post(config, calls)
    if journal is not None:
        for pid, answer in answers.items():
            with contextlib.suppress(OSError):
                journal.record("cancel_sent", job_id=job_id, peer=pid,
                               reason=reason[:MAX_REASON_CHARS],
                               outcome="told" if answer.get("ok") else "not told",
                               error=None if answer.get("ok") else str(answer.get("error")))
    return answers


def enqueue_here(config: NodeConfig, spec: dict[str, Any]) -> None:
    """Queue an accepted job on this node's own worker (its broker, the job id as task id)."""
    from celery import Celery  # noqa: PLC0415

    from sfnode.broker import RUN_JOB_TASK, client_settings  # noqa: PLC0415

    client = Celery("sfnode-channel", set_as_current=False)
    client.conf.update(client_settings(config.redis_url, config.result_backend_url,
                                      config.celery_queue))
    try:
        client.send_task(RUN_JOB_TASK, args=[spec], queue=config.celery_queue,
                         task_id=spec["job_id"])
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m sfnode.channel``: serve this node's job channel on NODE_IP:CHANNEL_PORT."""
    import argparse  # noqa: PLC0415
    import logging  # noqa: PLC0415

    from sfnode.config import load_config  # noqa: PLC0415
    from sfnode.federation import load_federation  # noqa: PLC0415
    from sfnode.policy import load_policy  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m sfnode.channel", description=main.__doc__)
    parser.add_argument("--env-file", type=Path, default=None,
                        help="node env file (default: this process's environment)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = load_config(args.env_file)
    if config.channel_port is None:
        parser.error("CHANNEL_PORT is empty: this node serves no job channel")
    federation = load_federation(config.federation_file)
    node = ChannelNode(config, federation, load_policy(config.policy_path, config.node_id),
                       Journal(config.journal_path, config.node_id),
                       lambda spec: enqueue_here(config, spec))
    web.run_app(make_app(node), host=config.node_ip, port=config.channel_port,
                ssl_context=server_context(config, federation), access_log=None,
                print=None, handle_signals=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

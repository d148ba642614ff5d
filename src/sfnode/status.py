"""``sfnode status``: one node's state, read-only, as playbooks/status.yml shows it.

Every probe is a function of its own, given to :func:`node_status`, so the
verdict logic is tested without Redis, Ray or systemd. A probe never raises:
what it could not find out is a problem in the report. A warning (a
certificate close to its end) is reported without making the node unhealthy.
"""

from __future__ import annotations

import datetime
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sfnode.broker import queue_keys, status_client_settings
from sfnode.config import NodeConfig
from sfnode.federation import Federation, FederationError, check_node, load_federation
from sfnode.health import probe_ray, versions
from sfnode.netprobe import listening_sockets, port_state

# How a report names a component of SERVICE_UNITS; any other is shown by its own name.
COMPONENT_LABELS = {"redis": "Redis", "ray_head": "Ray head", "worker": "worker", "channel": "job channel"}
CELERY_PING_TIMEOUT_SECONDS = 10.0
RAY_PROBE_TIMEOUT_SECONDS = 60.0
# A port "reachable" from a peer: the peer's host answered, whether or not
# something listens (nothing does on a slot no job uses).
REACHABLE = ("listening", "refused")
# Above this share of maxmemory the broker is close to refusing writes (noeviction).
REDIS_MEMORY_WARN_SHARE = 0.9
# Below this much free space where jobs write (and, on one filesystem, Redis's
# AOF), the node is about to fail jobs and lose the queue's durability.
DISK_FREE_MIN_BYTES = 1024**3
DISK_FREE_MIN_SHARE = 0.05
# A party's certificate with fewer days left than this is a warning; an expired one a problem.
CERT_WARN_DAYS = 30


def disk_state(config: NodeConfig) -> dict[str, Any]:
    """Free space on the filesystem of the job directory."""
    try:
        usage = shutil.disk_usage(config.job_dir)
    except OSError as exc:
        return {"path": str(config.job_dir), "error": f"{type(exc).__name__}: {exc}"}
    return {"path": str(config.job_dir), "free_bytes": usage.free, "total_bytes": usage.total}


def unit_state(unit: str) -> dict[str, Any]:
    """ActiveState/SubState of a unit and how long it has been active."""
    out = subprocess.run(
        ["systemctl", "show", "-p", "ActiveState,SubState,ActiveEnterTimestampMonotonic", unit],
        capture_output=True, text=True, check=False)
    props = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    state = {"active": props.get("ActiveState", "unknown"), "sub": props.get("SubState", "unknown"),
             "uptime_seconds": None}
    entered = int(props.get("ActiveEnterTimestampMonotonic") or 0)
    if state["active"] == "active" and entered > 0:
        state["uptime_seconds"] = int(time.monotonic() - entered / 1e6)
    return state


def redis_state(config: NodeConfig) -> dict[str, Any]:
    import redis

    try:
        client = redis.Redis.from_url(config.redis_url, socket_timeout=5, socket_connect_timeout=5)
        client.ping()
        memory = client.info("memory")
        persistence = client.info("persistence")
        return {
            "answers": True,
            "used_memory": int(memory.get("used_memory", 0)),
            "maxmemory": int(memory.get("maxmemory", 0)),
            "maxmemory_policy": memory.get("maxmemory_policy"),
            "aof_enabled": bool(persistence.get("aof_enabled")),
            "aof_last_write_status": persistence.get("aof_last_write_status"),
            "queue_length": sum(int(client.llen(key)) for key in queue_keys(config.celery_queue)),
        }
    except Exception as exc:  # noqa: BLE001  a probe reports, never raises
        return {"answers": False, "error": f"{type(exc).__name__}: {exc}"}


def celery_state(config: NodeConfig, timeout: float = CELERY_PING_TIMEOUT_SECONDS) -> dict[str, Any]:
    """Ping this node's worker through its broker; the round trip in ms.

    Only this node's worker consumes from this broker, so the first reply
    ends the wait (``limit=1``) and the round trip is the real one."""
    from celery import Celery

    client = Celery("sfnode-status", set_as_current=False)
    client.conf.update(status_client_settings(config))
    started = time.monotonic()
    try:
        replies = client.control.ping(timeout=timeout, limit=1)
    except Exception as exc:  # noqa: BLE001
        return {"answers": False, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        client.close()
    elapsed_ms = round((time.monotonic() - started) * 1000)
    ours = [name for reply in replies for name in reply if name.startswith(f"{config.node_id}@")]
    if not ours:
        return {"answers": False, "error": f"no worker named {config.node_id}@... answered a ping "
                                           f"within {timeout:.0f} s"}
    return {"answers": True, "workers": ours, "round_trip_ms": elapsed_ms}


def ray_state(config: NodeConfig, timeout: float = RAY_PROBE_TIMEOUT_SECONDS) -> dict[str, Any]:
    """The GCS answers a connection, then the head its resources (the health
    task's probe, a driver that connects and leaves)."""
    host, _, port = config.ray_address.rpartition(":")
    gcs = port_state(host, int(port))
    if gcs != "listening":
        return {"answers": False, "gcs": gcs, "address": config.ray_address,
                "error": f"the GCS does not answer on {config.ray_address} ({gcs})"}
    answer = probe_ray(config, timeout=timeout)
    return {"answers": answer.get("resources") is not None, "gcs": gcs, **answer}


@dataclass
class Probes:
    """What :func:`node_status` asks; tests give stand-ins."""

    unit: Callable[[str], dict[str, Any]] = unit_state
    redis: Callable[[NodeConfig], dict[str, Any]] = redis_state
    celery: Callable[[NodeConfig], dict[str, Any]] = celery_state
    ray: Callable[[NodeConfig], dict[str, Any]] = ray_state
    listening: Callable[[], set[tuple[str, int]]] = listening_sockets
    port: Callable[[str, int], str] = port_state
    versions: Callable[[], dict[str, str | None]] = versions
    disk: Callable[[NodeConfig], dict[str, Any]] = disk_state


def redis_port(config: NodeConfig) -> int:
    return urlsplit(config.redis_url).port or 6379


def expected_sockets(config: NodeConfig,
                     extra: dict[str, tuple[str, int]] | None = None) -> dict[str, tuple[str, int]]:
    """What must listen: Redis and the GCS from the env file, plus what the
    caller (playbooks/status.yml, from the inventory) adds."""
    return {"redis": ("127.0.0.1", redis_port(config)), "ray_gcs": (config.node_ip, config.ray_port),
            **(extra or {})}


def parse_expect(items: Iterable[str]) -> dict[str, tuple[str, int]]:
    """``NAME=ADDRESS:PORT`` items (``sfnode status --expect``)."""
    expected: dict[str, tuple[str, int]] = {}
    for item in items:
        name, sep, where = item.partition("=")
        address, colon, port = where.rpartition(":")
        if not (sep and name and colon and address and port.isdigit()):
            raise ValueError(f"--expect {item!r} is not NAME=ADDRESS:PORT (e.g. ray_gcs=10.0.0.2:61379)")
        expected[name] = (address.strip("[]"), int(port))
    return expected


def socket_problems(config: NodeConfig, listening: set[tuple[str, int]],
                    expected: dict[str, tuple[str, int]] | None = None) -> list[str]:
    problems = []
    for name, (address, port) in (expected or expected_sockets(config)).items():
        if not ({(address, port), ("0.0.0.0", port), ("::", port)} & listening):
            problems.append(f"{name}: nothing listens on {address}:{port}")
    exposed = sorted(a for a, p in listening if p == redis_port(config) and a not in ("127.0.0.1", "::1"))
    if exposed:
        problems.append(f"redis: listens on {', '.join(exposed)}:{redis_port(config)}, "
                        "expected 127.0.0.1 only")
    return problems


def reachability(config: NodeConfig, federation: Federation,
                 port: Callable[[str, int], str]) -> dict[str, dict[str, Any]]:
    """From this node, each peer's first rayfed and SPU port."""
    table: dict[str, dict[str, Any]] = {}
    for party in federation:
        if party.id == config.node_id:
            continue
        rayfed, spu = party.ports(0)
        row = {"ip": party.ip, "rayfed_port": rayfed, "spu_port": spu,
               "rayfed": port(party.ip, rayfed), "spu": port(party.ip, spu)}
        row["open"] = row["rayfed"] in REACHABLE and row["spu"] in REACHABLE
        table[party.id] = row
    return table


def certificate_expiry(pem: str, now: datetime.datetime) -> dict[str, Any]:
    """When a PEM certificate expires (``not_after``, UTC) and the whole days left; ``error``
    when it cannot be parsed."""
    try:
        from cryptography import x509  # the node's venv has it; only this report needs it

        cert = x509.load_pem_x509_certificate(pem.strip().encode("ascii"))
    except Exception as exc:  # noqa: BLE001  a probe reports, never raises
        return {"error": f"{type(exc).__name__}: {exc}"}
    not_after = cert.not_valid_after_utc
    return {"not_after": not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "days_left": (not_after - now).days}


def certificates_state(federation: Federation,
                       now: datetime.datetime | None = None) -> list[dict[str, Any]]:
    """Each federation party's certificate: ``party``, ``tls`` and, with TLS, its expiry."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return [{"party": party.id, "tls": True, **certificate_expiry(party.certificate, now)}
            if party.certificate is not None else {"party": party.id, "tls": False}
            for party in federation]


def certificate_verdict(rows: Iterable[dict[str, Any]], source: str) -> tuple[list[str], list[str]]:
    """(problems, warnings) of the certificates: expired or unreadable ones are problems,
    those with fewer than CERT_WARN_DAYS days left warnings."""
    problems: list[str] = []
    warnings: list[str] = []
    for row in rows:
        if not row["tls"]:
            continue
        party = row["party"]
        if "error" in row:
            problems.append(f"certificate of {party}: cannot be parsed from {source} "
                            f"({row['error']}); expected its PEM certificate")
        elif row["days_left"] < 0:
            problems.append(f"certificate of {party}: expired {row['not_after']}; TLS links with "
                            f"{party} fail until it has a new certificate and every party's "
                            "federation file carries it")
        elif row["days_left"] < CERT_WARN_DAYS:
            warnings.append(f"certificate of {party}: expires {row['not_after']} "
                            f"({row['days_left']} days left); renew it and re-render every "
                            "party's federation file before then")
    return problems, warnings


def node_status(config: NodeConfig, probes: Probes | None = None,
                expect: dict[str, tuple[str, int]] | None = None) -> dict[str, Any]:
    """This node's report: every probe's answer and ``problems``, each a
    sentence naming the service; ``ok`` when there are none. ``warnings``
    (same form) do not change ``ok``. The units are those of the env file's
    SERVICE_UNITS, in its order."""
    probes = probes or Probes()
    problems: list[str] = []
    unit_states = {unit: {"what": COMPONENT_LABELS.get(component, component), **probes.unit(unit)}
                   for component, unit in config.service_units}
    for unit, state in unit_states.items():
        if state["active"] != "active":
            problems.append(f"{state['what']} ({unit}) is {state['active']} ({state['sub']})")

    redis = probes.redis(config)
    if not redis.get("answers"):
        problems.append(f"redis: no answer with the password: {redis.get('error')}")
    else:
        if not redis.get("aof_enabled"):
            problems.append("redis: the append-only file is off (queued jobs would not survive a restart)")
        elif redis.get("aof_last_write_status") not in (None, "ok"):
            problems.append(f"redis: the last AOF write failed ({redis['aof_last_write_status']})")
        maxmemory = redis.get("maxmemory") or 0
        if maxmemory and redis.get("used_memory", 0) > REDIS_MEMORY_WARN_SHARE * maxmemory:
            problems.append(f"redis: {redis['used_memory']} of {maxmemory} bytes used; with noeviction "
                            "it refuses new jobs when full")

    ray = probes.ray(config)
    if not ray.get("answers"):
        problems.append(f"Ray head at {config.ray_address}: {ray.get('error') or 'no resources'}")
    if redis.get("answers"):
        celery = probes.celery(config)
        if not celery.get("answers"):
            problems.append(f"worker: {celery.get('error')}")
    else:
        celery = {"answers": False, "error": "not asked: its broker does not answer"}

    disk = probes.disk(config)
    if "error" in disk:
        problems.append(f"disk: cannot tell the free space of {disk['path']}: {disk['error']}")
    elif disk["free_bytes"] < max(DISK_FREE_MIN_BYTES, DISK_FREE_MIN_SHARE * disk["total_bytes"]):
        problems.append(f"disk: {disk['free_bytes']} of {disk['total_bytes']} bytes free on "
                        f"{disk['path']}; jobs fail and Redis's append-only file stops when it is "
                        "full (lower JOB_RETENTION_MB/DAYS, or free space)")

    listening = probes.listening()
    expected = expected_sockets(config, expect)
    problems.extend(socket_problems(config, listening, expected))

    warnings: list[str] = []
    try:
        federation = load_federation(config.federation_file)
        problems.extend(check_node(config, federation))
        reach = reachability(config, federation, probes.port)
        certificates = certificates_state(federation)
    except FederationError as exc:
        problems.extend(exc.problems)
        reach = {}
        certificates = []
    for peer, row in reach.items():
        for kind in ("rayfed", "spu"):
            if row[kind] not in REACHABLE:
                problems.append(f"{kind} port {row[f'{kind}_port']} of {peer} ({row['ip']}): {row[kind]} "
                                f"from {config.node_id}")
    cert_problems, cert_warnings = certificate_verdict(certificates, str(config.federation_file))
    problems.extend(cert_problems)
    warnings.extend(cert_warnings)

    return {
        "ok": not problems,
        "node_id": config.node_id,
        "node_ip": config.node_ip,
        "units": unit_states,
        "versions": probes.versions(),
        "redis": redis,
        "ray": ray,
        "celery": celery,
        "disk": disk,
        "sockets": {"expected": {k: f"{a}:{p}" for k, (a, p) in expected.items()},
                    "listens": {k: bool({(a, p), ("0.0.0.0", p), ("::", p)} & listening)
                                for k, (a, p) in expected.items()},
                    "listening": sorted(f"{a}:{p}" for a, p in listening)},
        "reachability": reach,
        "certificates": certificates,
        "problems": problems,
        "warnings": warnings,
    }

"""The arguments SecretFlow is called with in production mode, built from a job.

Every party runs the same code with its own ``self_party``. Nothing here
imports SecretFlow, so what a job asks of it is unit testable without it. On a
node with TLS every link (rayfed's gRPC, SPU's) is mutual TLS with this node's
certificate and key, trusting only the job's trust bundle (its other parties'
certificates, ``peers.pem`` in the work dir).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfnode.config import NodeConfig
from sfnode.jobdir import peers_cert_path
from sfnode.jobspec import JobSpec

# SPU's field is fixed: FM128 works with every protocol the kinds offer.
SPU_FIELD = "FM128"
# What rayfed may unpickle from a peer's messages (its receiving proxy refuses any
# other global: "global 'M.N' is forbidden"): the types SecretFlow's devices
# exchange for the job kinds here, as recorded on a live two-party federation
# running ping, spu_sum and psi, and numpy's arrays and scalars. Without it, a
# peer could make this party build any Python object.
SERIALIZING_ALLOWED: dict[str, list[str]] = {
    "fed.exceptions": ["FedRemoteError"],
    "jax._src.api": ["ShapeDtypeStruct"],
    "libspu.spu_pb2": ["ExecutableProto"],
    "numpy": ["dtype", "ndarray"],
    "numpy.core.multiarray": ["_reconstruct", "scalar"],
    "secretflow.device.device.spu": ["SPUIOInfo", "SPUValueMeta"],
}
# How rayfed's gRPC retries a message a peer refused (UNAVAILABLE: not listening yet,
# or a broken connection). gRPC waits a random time up to the current backoff, which
# starts at initialBackoff and grows by backoffMultiplier up to maxBackoff, for at most
# maxAttempts tries in all (5 is gRPC's ceiling). rayfed's own policy starts at 5 s: its
# readiness ping (a try, 1 s to answer, 2 s pause) then missed a peer that came up a
# moment later by 3 s. This one retries within 0.5 s and gives up after about 7.5 s
# (rayfed's: about 65 s), which ends the job (exit_on_sending_failure).
GRPC_RETRY_POLICY: dict[str, Any] = {
    "maxAttempts": 5,
    "initialBackoff": "0.5s",
    "maxBackoff": "4s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
# SPU's links to its peers: try every 200 ms for up to 2 minutes while a peer's SPU
# runtime starts (SPU's own default: every 1 s).
SPU_CONNECT_RETRY_INTERVAL_MS = 200
SPU_CONNECT_RETRY_TIMES = 600
# SPU's TLS: a peer's certificate is self-signed (its own anchor) or signed by its
# organisation's root CA (the anchor): depth 1 lets OpenSSL build either chain.
SPU_TLS_VERIFY_DEPTH = 1
# How long one send over a brpc link (SPU's, and rayfed's in a pipeline) waits for the
# peer's answer before it is sent again (the link sends at most 1 MiB a request, and
# tries 3 more times, so a link slower than about 1 Mbit/s fails the job). brpc with
# TLS can leave the last bytes of a request in OpenSSL's buffer when the socket is full,
# until the connection's next write: the request then completes only by this timeout
# and its resend, which flushes them (on the demo federation: one such pause in most
# pipelines, and "Duplicate seq_id found" in the peer's log). With the entry's 300 s for
# rayfed's link, an SS-SGD training paused 300 s; with the job's deadline for SPU's, a
# pause could last as long as the job. yacl's own default is 20 s.
LINK_SEND_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class JobContext:
    """What a kind's run function gets besides ``sf``: the job, this node, the work dir."""

    spec: JobSpec
    config: NodeConfig
    workdir: Path
    # Records a phase of the job in its status (``step <id>`` for a pipeline); the runner's.
    on_phase: Callable[[str], None] | None = None
    # Records the job's result before SecretFlow shuts down (a kind that starts SecretFlow
    # itself): a shutdown that fails after the work is done does not lose it.
    on_result: Callable[[dict[str, Any]], None] | None = None

    @property
    def self_id(self) -> str:
        return self.config.node_id

    @property
    def trust_bundle(self) -> Path:
        """The job's trust bundle (written by the supervisor when TLS is on)."""
        return peers_cert_path(self.workdir)


def tls_files(ctx: JobContext) -> dict[str, str] | None:
    """This node's certificate, key and the job's trust bundle; None without TLS."""
    config = ctx.config
    if not config.tls_enabled or config.tls_cert is None or config.tls_key is None:
        return None
    return {"cert": str(config.tls_cert), "key": str(config.tls_key),
            "ca_cert": str(ctx.trust_bundle)}


def sf_init_kwargs(ctx: JobContext) -> dict[str, Any]:
    """Arguments of ``sf.init`` in production mode (no ``parties=``: that is simulation)."""
    spec = ctx.spec
    kwargs: dict[str, Any] = {
        "address": ctx.config.ray_address,
        "cluster_config": {
            "parties": {
                p.id: {"address": p.rayfed_address, "listen_addr": f"0.0.0.0:{p.rayfed_port}"}
                for p in spec.parties
            },
            "self_party": ctx.self_id,
        },
        "job_name": spec.job_id,
        "enable_waiting_for_other_parties_ready": True,
        "cross_silo_comm_options": {
            "exit_on_sending_failure": True,
            # True would send this party's tracebacks (paths, data in messages) to its peers.
            "expose_error_trace": False,
            # Proxy actors named after the job, so two jobs on one Ray head never share one.
            "use_global_proxy": False,
            # a copy: rayfed rewrites the mapping it is given
            "serializing_allowed_list": {module: list(names) for module, names in SERIALIZING_ALLOWED.items()},
            "grpc_retry_policy": {**GRPC_RETRY_POLICY,
                                  "retryableStatusCodes": list(GRPC_RETRY_POLICY["retryableStatusCodes"])},
        },
        "logging_level": "info",
        "log_to_driver": True,
    }
    tls = tls_files(ctx)
    if tls is not None:
        kwargs["tls_config"] = tls
    return kwargs


def spu_cluster_def(ctx: JobContext, protocol: str) -> dict[str, Any]:
    """``sf.SPU`` cluster definition.

    The node key is ``listen_address``; ``listen_addr`` (rayfed's spelling) is silently ignored.
    With TLS, this party's own node carries ``tls_opts`` (each party reads only its own).
    """
    tls = spu_tls_opts(ctx)
    nodes: list[dict[str, Any]] = []
    for p in ctx.spec.parties:
        node: dict[str, Any] = {"party": p.id, "address": p.spu_address,
                                "listen_address": f"0.0.0.0:{p.spu_port}"}
        if tls is not None and p.id == ctx.self_id:
            node["tls_opts"] = tls
        nodes.append(node)
    return {
        "nodes": nodes,
        "runtime_config": {"protocol": protocol, "field": SPU_FIELD},
    }


def spu_tls_opts(ctx: JobContext) -> dict[str, Any] | None:
    """SPU's ``tls_opts`` of this party's node: the same files as server and as client."""
    tls = tls_files(ctx)
    if tls is None:
        return None
    ssl_opts = {"certificate_path": tls["cert"], "private_key_path": tls["key"],
                "ca_file_path": tls["ca_cert"], "verify_depth": SPU_TLS_VERIFY_DEPTH}
    return {"server_ssl_opts": ssl_opts, "client_ssl_opts": dict(ssl_opts)}


def spu_link_desc(ctx: JobContext) -> dict[str, Any]:
    return {
        "connect_retry_times": SPU_CONNECT_RETRY_TIMES,
        "connect_retry_interval_ms": SPU_CONNECT_RETRY_INTERVAL_MS,
        # A slow peer (e.g. one reading a large input) must not time the wait for its
        # next message out before the job's own deadline does.
        "recv_timeout_ms": ctx.spec.deadline_seconds * 1000,
        "http_timeout_ms": LINK_SEND_TIMEOUT_MS,
    }


def spu_device(sf: Any, ctx: JobContext, protocol: str) -> Any:
    """The job's ``sf.SPU`` device, on every party's SPU port of the job's slot."""
    return sf.SPU(spu_cluster_def(ctx, protocol), link_desc=spu_link_desc(ctx))

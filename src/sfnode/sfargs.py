"""The arguments SecretFlow is called with in production mode, built from a job.

Every party runs the same code with its own ``self_party``. Nothing here
imports SecretFlow, so what a job asks of it is unit testable without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfnode.config import NodeConfig
from sfnode.jobspec import JobSpec

# SPU's field is fixed: FM128 works with every protocol the kinds offer.
SPU_FIELD = "FM128"


@dataclass(frozen=True)
class JobContext:
    """What a kind's run function gets besides ``sf``: the job, this node, the work dir."""

    spec: JobSpec
    config: NodeConfig
    workdir: Path

    @property
    def self_id(self) -> str:
        return self.config.node_id


def sf_init_kwargs(ctx: JobContext) -> dict[str, Any]:
    """Arguments of ``sf.init`` in production mode (no ``parties=``: that is simulation)."""
    spec = ctx.spec
    return {
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
            "expose_error_trace": True,
            # Proxy actors named after the job, so two jobs on one Ray head never share one.
            "use_global_proxy": False,
        },
        "logging_level": "info",
        "log_to_driver": True,
    }


def spu_cluster_def(ctx: JobContext, protocol: str) -> dict[str, Any]:
    """``sf.SPU`` cluster definition.

    The node key is ``listen_address``; ``listen_addr`` (rayfed's spelling) is silently ignored.
    """
    return {
        "nodes": [
            {"party": p.id, "address": p.spu_address,
             "listen_address": f"0.0.0.0:{p.spu_port}"}
            for p in ctx.spec.parties
        ],
        "runtime_config": {"protocol": protocol, "field": SPU_FIELD},
    }


def spu_link_desc(ctx: JobContext) -> dict[str, Any]:
    # A slow peer (e.g. one reading a large input) must not time the link out
    # before the job's own deadline does.
    timeout_ms = ctx.spec.deadline_seconds * 1000
    return {
        "connect_retry_times": 120,
        "connect_retry_interval_ms": 1000,
        "recv_timeout_ms": timeout_ms,
        "http_timeout_ms": timeout_ms,
    }


def spu_device(sf: Any, ctx: JobContext, protocol: str) -> Any:
    """The job's ``sf.SPU`` device, on every party's SPU port of the job's slot."""
    return sf.SPU(spu_cluster_def(ctx, protocol), link_desc=spu_link_desc(ctx))

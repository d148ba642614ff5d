"""The job kinds, run inside the runner process after ``sf.init``.

Every party runs the same code with its own ``self_party``; a PYU call for
another party only schedules nothing locally and waits for that party's
result, so each party's private input is read on that party only.

SecretFlow is passed in as ``sf`` (imported lazily by the runner); nothing
here imports it at module level, so the argument builders below are unit
testable without SecretFlow.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfnode.config import NodeConfig
from sfnode.spec import JobSpec, data_path, psi_output_path

# SPU's field is fixed: FM128 works with all three protocols offered.
SPU_FIELD = "FM128"


@dataclass(frozen=True)
class JobContext:
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


def _identity(value: Any) -> Any:
    return value


def _receipt(value: Any, at: str) -> dict[str, Any]:
    return {"received": value, "at": at}


def _as_int32(value: int) -> Any:
    import numpy as np

    return np.int32(value)


def _add_all(*values: Any) -> Any:
    return functools.reduce(operator.add, values)


def run_ping(sf: Any, ctx: JobContext) -> dict[str, Any]:
    """Each party's PYU produces its id; every value is moved to every other party."""
    ids = ctx.spec.party_ids
    pyus = {pid: sf.PYU(pid) for pid in ids}
    own = {pid: pyus[pid](_identity)(pid) for pid in ids}
    routes = [(src, dst) for src in ids for dst in ids if src != dst]
    receipts = [pyus[dst](_receipt)(own[src].to(pyus[dst]), dst) for src, dst in routes]
    revealed = sf.reveal(receipts)
    exchanges = [
        {"from": src, "to": dst, "received": r["received"], "ok": r["received"] == src}
        for (src, dst), r in zip(routes, revealed, strict=True)
    ]
    reached = sorted({e["to"] for e in exchanges if e["ok"]})
    return {"parties": ids, "reached": reached, "exchanges": exchanges}


def run_spu_sum(sf: Any, ctx: JobContext) -> dict[str, Any]:
    """Each party contributes only its own value; SPU adds them and reveals the sum."""
    params = ctx.spec.params
    protocol = params["protocol"]
    ids = ctx.spec.party_ids
    spu = sf.SPU(spu_cluster_def(ctx, protocol), link_desc=spu_link_desc(ctx))
    own_value = params["values"][ctx.self_id]
    shares = []
    for pid in ids:
        # The argument is only evaluated where the PYU lives: 0 elsewhere is never used.
        value = own_value if pid == ctx.self_id else 0
        shares.append(sf.PYU(pid)(_as_int32)(value).to(spu))
    total = sf.reveal(spu(_add_all)(*shares))
    return {"sum": int(total), "protocol": protocol, "parties": ids}


def run_psi(sf: Any, ctx: JobContext) -> dict[str, Any]:
    """Two-party PSI v2 on CSV files under DATA_DIR; the output goes to the job dir."""
    params = ctx.spec.params
    ids = ctx.spec.party_ids
    inputs = params["inputs"]
    output = psi_output_path(ctx.config, ctx.spec.job_id)
    spu = sf.SPU(spu_cluster_def(ctx, "SEMI2K"), link_desc=spu_link_desc(ctx))
    # Each party's actor uses its own entry; the peers' entries are never read here.
    reports = spu.psi(
        keys={pid: inputs[pid]["keys"] for pid in ids},
        input_path={pid: str(data_path(ctx.config, inputs[pid]["path"])) for pid in ids},
        output_path={pid: str(output) for pid in ids},
        receiver=params["receiver"],
        table_keys_duplicated={pid: False for pid in ids},
        broadcast_result=params["broadcast_result"],
        protocol=params["protocol"],
    )
    per_party = {
        r["party"]: {"original_count": int(r["original_count"]),
                     "intersection_count": int(r["intersection_count"])}
        for r in reports
    }
    mine = per_party.get(ctx.self_id, {})
    return {
        "protocol": params["protocol"],
        "receiver": params["receiver"],
        "parties": per_party,
        "original_count": mine.get("original_count"),
        "intersection_count": mine.get("intersection_count"),
        "output_path": str(output) if output.exists() else None,
    }


KINDS: dict[str, Callable[[Any, JobContext], dict[str, Any]]] = {
    "ping": run_ping,
    "spu_sum": run_spu_sum,
    "psi": run_psi,
}


def uses_spu(kind: str) -> bool:
    return kind in ("spu_sum", "psi")


def run_kind(sf: Any, ctx: JobContext) -> dict[str, Any]:
    return KINDS[ctx.spec.kind](sf, ctx)

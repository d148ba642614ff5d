"""Kind ``psi``: two-party private set intersection (SPU PSI v2) of CSV files.

Params: ``inputs`` (per party a ``path`` relative to that party's DATA_DIR
and its key columns ``keys``), ``receiver`` (the party that gets the
intersection), ``protocol`` (default PROTOCOL_RR22) and ``broadcast_result``
(default true: every party gets it). Each node checks its own input file
only; the output is written to the job's work dir.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sfnode.config import NodeConfig
from sfnode.jobdir import workdir
from sfnode.kinds._inputs import check_own_file, check_relative_path, data_path
from sfnode.kinds._kind import Kind, ParamCheck
from sfnode.problems import MISSING
from sfnode.sfargs import JobContext, spu_device

PARAMS = ("inputs", "receiver", "protocol", "broadcast_result")
INPUT_FIELDS = ("path", "keys")
PSI_PROTOCOLS = ("PROTOCOL_RR22", "PROTOCOL_ECDH", "PROTOCOL_KKRT")
DEFAULT_PSI_PROTOCOL = "PROTOCOL_RR22"
MAX_PSI_KEYS = 16
OUTPUT_NAME = "psi_output.csv"
# The SPU device needs a runtime config; PSI runs its own protocol (params.protocol) over the
# device's links, and SEMI2K takes any number of parties.
DEVICE_PROTOCOL = "SEMI2K"


def output_path(config: NodeConfig, job_id: str) -> Path:
    return workdir(config.job_dir, job_id) / OUTPUT_NAME


def own_input(ctx: JobContext) -> Path:
    """This party's input as PSI reads it: a link in the job's work dir to the file under
    DATA_DIR. PSI writes a scratch file beside the path it is given (``PATH.temp.csv``), and
    the inputs are read-only to the Ray head that runs it; the work dir is its to write."""
    target = os.path.realpath(data_path(ctx.config, ctx.spec.params["inputs"][ctx.self_id]["path"]))
    link = ctx.workdir / f"input-{ctx.self_id}.csv"
    if not link.is_symlink():
        link.symlink_to(target)
    return link


def validate(params: dict[str, Any], check: ParamCheck) -> dict[str, Any]:
    ids = check.party_ids
    check.known_params(params, PARAMS)
    if len(ids) != 2:
        check.add("parties", ids, f"has {len(ids)} parties; expected exactly 2 for kind psi",
                  "exactly 2 parties")
    protocol = params.get("protocol", DEFAULT_PSI_PROTOCOL)
    check.one_of("params.protocol", protocol, PSI_PROTOCOLS, "is not a PSI protocol")
    receiver = params.get("receiver", MISSING)
    check.one_of("params.receiver", receiver, ids, "is not a party of the job")
    broadcast = params.get("broadcast_result", True)
    if not isinstance(broadcast, bool):
        check.add("params.broadcast_result", broadcast, "is not valid; expected true or false",
                  "true or false")
    return {"inputs": _check_inputs(params.get("inputs", MISSING), check), "receiver": receiver,
            "protocol": protocol, "broadcast_result": broadcast}


def _check_inputs(inputs: Any, check: ParamCheck) -> dict[str, dict[str, Any]]:
    ids = check.party_ids
    if not isinstance(inputs, Mapping):
        check.add("params.inputs", inputs, f"is not valid; expected an object with "
                  f"{{path, keys}} for each party ({', '.join(ids)})", "{party: {path, keys}}")
        return {}
    check.of_parties("params.inputs", inputs)
    clean: dict[str, dict[str, Any]] = {}
    for pid in ids:
        entry = _check_input(f"params.inputs.{pid}", pid, inputs.get(pid, MISSING),
                             bool(inputs), check)
        if entry is not None:
            clean[pid] = entry
    if len(clean) == 2:
        counts = {pid: len(v["keys"]) for pid, v in clean.items()}
        if len(set(counts.values())) != 1:
            check.add("params.inputs", counts, "has a different number of keys per party; "
                      "expected the same number of key columns on both sides",
                      "equal key counts")
    return clean


def _check_input(where: str, pid: str, entry: Any, any_given: bool,
                 check: ParamCheck) -> dict[str, Any] | None:
    if not isinstance(entry, Mapping):
        if any_given:  # with no inputs at all, params.inputs is the one problem
            check.add(where, entry, "is not valid; expected {\"path\": \"relative/file.csv\", "
                      "\"keys\": [\"id\"]}", "{path, keys}")
        return None
    check.problems.only(f"{where}.", entry, INPUT_FIELDS, "is not an input field")
    path = check_relative_path(f"{where}.path", entry.get("path", MISSING), check)
    keys = entry.get("keys", MISSING)
    keys_ok = (
        isinstance(keys, list) and 1 <= len(keys) <= MAX_PSI_KEYS
        and all(isinstance(k, str) and k for k in keys) and len(set(keys)) == len(keys)
    )
    if not keys_ok:
        check.add(f"{where}.keys", keys, f"is not valid; expected a list of 1..{MAX_PSI_KEYS} "
                  "distinct column names", "a list of column names")
    if pid == check.config.node_id and path is not None and check.check_files:
        check_own_file(where, entry["path"], path, keys if keys_ok else None, check, "keys")
    return {"path": path, "keys": list(keys)} if path is not None and keys_ok else None


def run(sf: Any, ctx: JobContext) -> dict[str, Any]:
    """Two-party PSI v2 on CSV files under DATA_DIR; the output goes to the job dir."""
    params = ctx.spec.params
    ids = ctx.spec.party_ids
    inputs = params["inputs"]
    output = output_path(ctx.config, ctx.spec.job_id)
    spu = spu_device(sf, ctx, DEVICE_PROTOCOL)
    # Each party's actor uses its own entry; the peers' entries are never read here.
    reports = spu.psi(
        keys={pid: inputs[pid]["keys"] for pid in ids},
        input_path={pid: str(own_input(ctx) if pid == ctx.self_id else data_path(ctx.config, inputs[pid]["path"]))
                    for pid in ids},
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


def reads(params: dict[str, Any], party: str) -> tuple[str, ...]:
    """The input of ``party`` (relative to its DATA_DIR)."""
    entry = (params.get("inputs") or {}).get(party)
    return (entry["path"],) if isinstance(entry, Mapping) and entry.get("path") else ()


def reveals(params: dict[str, Any], parties: tuple[str, ...]) -> tuple[str, ...]:
    """The receiver, and with ``broadcast_result`` every party."""
    if params.get("broadcast_result", True):
        return parties
    return tuple(p for p in parties if p == params.get("receiver"))


KIND = Kind(validate=validate, run=run, uses_spu=True, reads=reads, reveals=reveals)

"""Job specs: parse, expand and validate what a worker receives.

A spec is checked against this node's configuration and federation file
before anything runs. Every problem is collected and reported at once, each
naming the field (a dotted path such as ``parties[1].ip``), the value and what
would be valid.
"""

from __future__ import annotations

import copy
import csv
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from sfnode.config import MAX_DEADLINE_SECONDS, NODE_ID_PATTERN, NODE_ID_RE, NodeConfig
from sfnode.federation import Federation, check_node
from sfnode.jobdir import workdir
from sfnode.problems import MISSING, Problem, Problems, Style, is_int

KINDS = ("ping", "spu_sum", "psi")
JOB_ID_PATTERN = "[a-z0-9][a-z0-9-]{0,62}"
JOB_ID_RE = re.compile(JOB_ID_PATTERN)
TOP_LEVEL_KEYS = ("job_id", "kind", "slot", "deadline_seconds", "parties", "params")
PARTY_KEYS = ("id", "ip", "rayfed_port", "spu_port")

SPU_PROTOCOLS = ("SEMI2K", "ABY3", "CHEETAH")
DEFAULT_SPU_PROTOCOL = "SEMI2K"
PSI_PROTOCOLS = ("PROTOCOL_RR22", "PROTOCOL_ECDH", "PROTOCOL_KKRT")
DEFAULT_PSI_PROTOCOL = "PROTOCOL_RR22"
PSI_OUTPUT_NAME = "psi_output.csv"
# secretflow does not enable jax x64, so plaintext ints enter and leave SPU as int32.
SPU_SUM_LIMIT = 2**31 - 1
MAX_PSI_KEYS = 16

# How a job spec's problems read: ``job spec field slot: 5 does not fit ...``.
SPEC_STYLE = Style(with_value="job spec field {field}: {value} {reason}",
                   without_value="job spec field {field}: {reason}", missing="missing", limit=120)


class SpecError(ValueError):
    """A job spec failed validation; ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        if not problems:
            raise ValueError("SpecError needs at least one problem")
        self.problems = list(problems)
        first = self.problems[0]
        self.field = first.field
        self.value = None if first.value is MISSING else first.value
        self.expected = first.expected
        if len(self.problems) == 1:
            text = first.message
        else:
            lines = "\n".join(f"  - {p.message}" for p in self.problems)
            text = f"{len(self.problems)} problems in job spec:\n{lines}"
        super().__init__(text)

    def to_dicts(self) -> list[dict[str, Any]]:
        return [p.to_dict() for p in self.problems]


@dataclass(frozen=True)
class PartySpec:
    id: str
    ip: str
    rayfed_port: int
    spu_port: int

    @property
    def rayfed_address(self) -> str:
        return f"{self.ip}:{self.rayfed_port}"

    @property
    def spu_address(self) -> str:
        return f"{self.ip}:{self.spu_port}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "ip": self.ip, "rayfed_port": self.rayfed_port,
                "spu_port": self.spu_port}


@dataclass(frozen=True)
class JobSpec:
    job_id: str
    kind: str
    slot: int
    deadline_seconds: int
    parties: tuple[PartySpec, ...]
    params: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def party_ids(self) -> list[str]:
        return [p.id for p in self.parties]

    def party(self, party_id: str) -> PartySpec:
        for p in self.parties:
            if p.id == party_id:
                return p
        raise KeyError(party_id)

    def peers(self, self_id: str) -> list[PartySpec]:
        return [p for p in self.parties if p.id != self_id]

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "kind": self.kind,
            "slot": self.slot,
            "deadline_seconds": self.deadline_seconds,
            "parties": [p.to_dict() for p in self.parties],
            "params": copy.deepcopy(self.params),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobSpec:
        """Rebuild a spec that :func:`validate_spec` already normalised (no checks)."""
        return cls(
            job_id=data["job_id"],
            kind=data["kind"],
            slot=data["slot"],
            deadline_seconds=data["deadline_seconds"],
            parties=tuple(PartySpec(**p) for p in data["parties"]),
            params=copy.deepcopy(dict(data.get("params") or {})),
        )


def psi_output_path(config: NodeConfig, job_id: str) -> Path:
    return workdir(config.job_dir, job_id) / PSI_OUTPUT_NAME


def data_path(config: NodeConfig, relative: str) -> Path:
    """An input path of a spec (already validated as relative) under DATA_DIR."""
    return config.data_dir / os.path.normpath(relative)


# --- expansion -----------------------------------------------------------------------------


def expand_spec(
    data: Mapping[str, Any], federation: Federation, default_deadline: int | None = None
) -> dict[str, Any]:
    """Expand a short spec (``parties`` as a list of ids) into a full one.

    Ports come from the federation file: slot ``k`` (default 0) is range start + k.
    A spec whose parties are already objects is returned unchanged apart from
    defaults (``deadline_seconds``, ``params``).
    """
    problems = Problems(SPEC_STYLE)
    if not isinstance(data, Mapping):
        problems.add("(top level)", data, "is not a JSON object; expected a job spec object",
                     "a JSON object")
        problems.raise_if_any(SpecError)
    spec = copy.deepcopy(dict(data))
    if default_deadline is not None and "deadline_seconds" not in spec:
        spec["deadline_seconds"] = default_deadline
    spec.setdefault("params", {})
    parties = spec.get("parties")
    if not (isinstance(parties, list) and parties and all(isinstance(p, str) for p in parties)):
        return spec
    slot = spec.setdefault("slot", 0)
    if not is_int(slot) or slot < 0:
        problems.add("slot", slot, "is not a port slot; expected an integer >= 0",
                     "an integer >= 0")
        problems.raise_if_any(SpecError)
    expanded = []
    for index, pid in enumerate(parties):
        party = federation.get(pid)
        if party is None:
            problems.add(f"parties[{index}]", pid,
                         f"is not in the federation file; expected one of "
                         f"{', '.join(federation.ids)}", "a party of the federation file")
            continue
        if slot >= party.slots:
            problems.add("slot", slot,
                         f"does not fit party {pid}'s port ranges (rayfed {party.rayfed_ports}, "
                         f"spu {party.spu_ports}); expected 0..{party.slots - 1}",
                         f"0..{party.slots - 1}")
            continue
        expanded.append({"id": pid, "ip": party.ip, "rayfed_port": party.rayfed_port(slot),
                         "spu_port": party.spu_port(slot)})
    problems.raise_if_any(SpecError)
    spec["parties"] = expanded
    return spec


# --- validation ----------------------------------------------------------------------------


def validate_spec(
    data: Any,
    config: NodeConfig,
    federation: Federation,
    *,
    check_files: bool = True,
) -> JobSpec:
    """Validate a full spec for this node; return it normalised or raise :class:`SpecError`."""
    problems = Problems(SPEC_STYLE)
    if not isinstance(data, Mapping):
        problems.add("(top level)", data, "is not a JSON object; expected a job spec object",
                     "a JSON object")
        problems.raise_if_any(SpecError)

    for node_problem in check_node(config, federation):
        problems.add("(node)", config.node_id,
                     f"cannot run jobs: this node's env file and federation file disagree: "
                     f"{node_problem}", "an env file that matches the federation file")

    for key in data:
        if key not in TOP_LEVEL_KEYS:
            problems.add(key, data[key], f"is not a job spec field; expected only "
                         f"{', '.join(TOP_LEVEL_KEYS)}", ", ".join(TOP_LEVEL_KEYS))

    job_id = data.get("job_id", MISSING)
    if not isinstance(job_id, str) or not JOB_ID_RE.fullmatch(job_id):
        problems.add("job_id", job_id,
                     f"is not a valid job id; expected {JOB_ID_PATTERN}", JOB_ID_PATTERN)

    kind = data.get("kind", MISSING)
    if kind not in KINDS:
        problems.add("kind", kind, f"is not a known job kind; expected one of {', '.join(KINDS)}",
                     ", ".join(KINDS))

    slot = data.get("slot", MISSING)
    slot_ok = is_int(slot) and slot >= 0
    if not slot_ok:
        problems.add("slot", slot, "is not a port slot; expected an integer >= 0",
                     "an integer >= 0")

    deadline = data.get("deadline_seconds", config.job_deadline_seconds)
    if not is_int(deadline) or not 1 <= deadline <= MAX_DEADLINE_SECONDS:
        problems.add("deadline_seconds", deadline,
                     f"is not a valid deadline; expected an integer of seconds in "
                     f"1..{MAX_DEADLINE_SECONDS}", f"1..{MAX_DEADLINE_SECONDS}")

    parties = _validate_parties(data.get("parties", MISSING), slot if slot_ok else None,
                                config, federation, problems)
    ids = [p.id for p in parties]

    params = data.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        problems.add("params", params, "is not an object; expected an object of the kind's "
                     "parameters", "an object")
        params = {}
    normalised: dict[str, Any] = {}
    if kind in KINDS and ids:
        validator = _PARAM_VALIDATORS[kind]
        normalised = validator(dict(params), ids, config, problems, check_files)

    problems.raise_if_any(SpecError)
    return JobSpec(job_id=job_id, kind=kind, slot=slot, deadline_seconds=deadline,
                   parties=tuple(parties), params=normalised)


def _validate_parties(raw: Any, slot: int | None, config: NodeConfig, federation: Federation,
                      problems: Problems) -> list[PartySpec]:
    if not isinstance(raw, list) or len(raw) < 2:
        problems.add("parties", raw, "is not valid; expected a list of at least 2 party objects "
                     "(id, ip, rayfed_port, spu_port); a short spec's list of ids must be "
                     "expanded first (sfnode expand)", "a list of >= 2 party objects")
        return []
    parties: list[PartySpec] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(raw):
        where = f"parties[{index}]"
        if not isinstance(item, Mapping):
            problems.add(where, item, "is not a party object; expected {id, ip, rayfed_port, "
                         "spu_port} (expand a short spec first)", "a party object")
            continue
        ok = True
        for key in item:
            if key not in PARTY_KEYS:
                problems.add(f"{where}.{key}", item[key], f"is not a party field; expected only "
                             f"{', '.join(PARTY_KEYS)}", ", ".join(PARTY_KEYS))
                ok = False
        pid = item.get("id", MISSING)
        if not isinstance(pid, str) or not NODE_ID_RE.fullmatch(pid):
            problems.add(f"{where}.id", pid, f"is not a valid party id; expected "
                         f"{NODE_ID_PATTERN}", NODE_ID_PATTERN)
            continue
        if pid in seen:
            problems.add(f"{where}.id", pid, f"duplicates parties[{seen[pid]}].id; expected "
                         "each party once", "unique party ids")
            continue
        seen[pid] = index
        known = federation.get(pid)
        if known is None:
            problems.add(f"{where}.id", pid, f"is not in this node's federation file; expected "
                         f"one of {', '.join(federation.ids)}", ", ".join(federation.ids))
            continue
        ip = item.get("ip", MISSING)
        if ip != known.ip:
            problems.add(f"{where}.ip", ip, f"does not match this node's federation file "
                         f"({known.ip!r} for party {pid})", known.ip)
            ok = False
        fits = slot is not None and slot < known.slots
        if slot is not None and not fits:
            problems.add("slot", slot, f"does not fit party {pid}'s port ranges (rayfed "
                         f"{known.rayfed_ports}, spu {known.spu_ports}); expected "
                         f"0..{known.slots - 1}", f"0..{known.slots - 1}")
            ok = False
        for key, rng in (("rayfed_port", known.rayfed_ports), ("spu_port", known.spu_ports)):
            port = item.get(key, MISSING)
            if not is_int(port):
                problems.add(f"{where}.{key}", port, f"is not a port number; expected an "
                             f"integer in {rng}", f"an integer in {rng}")
                ok = False
            elif fits and port != rng.start + slot:
                problems.add(f"{where}.{key}", port, f"is not slot {slot} of party {pid}'s "
                             f"range {rng}; expected {rng.start + slot}", str(rng.start + slot))
                ok = False
        if ok:
            parties.append(PartySpec(pid, ip, item["rayfed_port"], item["spu_port"]))
    if seen and config.node_id not in seen:
        problems.add("parties", [p.get("id") if isinstance(p, Mapping) else p for p in raw],
                     f"does not include this node ({config.node_id}); expected a list of parties "
                     f"that includes {config.node_id}", f"parties including {config.node_id}")
    if len(parties) < len(raw):
        return []  # params are only checked against a clean party list
    return parties


def _unknown_params(params: dict[str, Any], allowed: tuple[str, ...], kind: str,
                    problems: Problems) -> None:
    for key in params:
        if key not in allowed:
            expected = ", ".join(allowed) if allowed else "no parameters"
            problems.add(f"params.{key}", params[key], f"is not a parameter of kind {kind}; "
                         f"expected {expected}", expected)


def _ping_params(params: dict[str, Any], ids: list[str], config: NodeConfig,
                 problems: Problems, check_files: bool) -> dict[str, Any]:
    _unknown_params(params, (), "ping", problems)
    return {}


def _spu_sum_params(params: dict[str, Any], ids: list[str], config: NodeConfig,
                    problems: Problems, check_files: bool) -> dict[str, Any]:
    _unknown_params(params, ("values", "protocol"), "spu_sum", problems)
    protocol = params.get("protocol", DEFAULT_SPU_PROTOCOL)
    if protocol not in SPU_PROTOCOLS:
        problems.add("params.protocol", protocol, f"is not an SPU protocol; expected one of "
                     f"{', '.join(SPU_PROTOCOLS)}", ", ".join(SPU_PROTOCOLS))
    elif protocol == "ABY3" and len(ids) != 3:
        problems.add("params.protocol", protocol, f"needs exactly 3 parties, the job has "
                     f"{len(ids)}; expected SEMI2K (any number of parties) or 3 parties",
                     "exactly 3 parties")
    elif protocol == "CHEETAH" and len(ids) != 2:
        problems.add("params.protocol", protocol, f"needs exactly 2 parties, the job has "
                     f"{len(ids)}; expected SEMI2K (any number of parties) or 2 parties",
                     "exactly 2 parties")
    values = params.get("values", MISSING)
    clean: dict[str, int] = {}
    if not isinstance(values, Mapping):
        problems.add("params.values", values, f"is not valid; expected an object with one "
                     f"integer per party ({', '.join(ids)})", "{party: int}")
    else:
        for pid in ids:
            value = values.get(pid, MISSING)
            if not is_int(value) or abs(value) > SPU_SUM_LIMIT:
                problems.add(f"params.values.{pid}", value, f"is not valid; expected an "
                             f"integer in -{SPU_SUM_LIMIT}..{SPU_SUM_LIMIT}",
                             f"an integer in -{SPU_SUM_LIMIT}..{SPU_SUM_LIMIT}")
            else:
                clean[pid] = value
        if len(clean) == len(ids) and sum(abs(v) for v in clean.values()) > SPU_SUM_LIMIT:
            problems.add("params.values", values, f"could overflow: the sum of absolute values "
                         f"exceeds {SPU_SUM_LIMIT}; expected values whose sum fits a 32-bit "
                         "integer (SPU reveals int32 here)", f"|sum| <= {SPU_SUM_LIMIT}")
        for pid in values:
            if pid not in ids:
                problems.add(f"params.values.{pid}", values[pid], f"is for a party not in the "
                             f"job; expected only {', '.join(ids)}", ", ".join(ids))
    return {"values": clean, "protocol": protocol}


def _check_relative_path(where: str, path: Any, config: NodeConfig,
                         problems: Problems) -> str | None:
    expected = "a relative path that stays inside DATA_DIR"
    if not isinstance(path, str) or not path or "\x00" in path:
        problems.add(where, path, f"is not a path; expected {expected}", expected)
        return None
    if PurePosixPath(path).is_absolute():
        problems.add(where, path, f"is an absolute path; expected {expected} "
                     f"({config.data_dir})", expected)
        return None
    normal = os.path.normpath(path)
    if normal in (".", "..") or normal.startswith("../"):
        problems.add(where, path, f"leaves DATA_DIR after normalisation ({normal!r}); "
                     f"expected {expected} ({config.data_dir})", expected)
        return None
    return normal


def _csv_header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle), [])


def _psi_params(params: dict[str, Any], ids: list[str], config: NodeConfig,
                problems: Problems, check_files: bool) -> dict[str, Any]:
    allowed = ("inputs", "receiver", "protocol", "broadcast_result")
    _unknown_params(params, allowed, "psi", problems)
    if len(ids) != 2:
        problems.add("parties", ids, f"has {len(ids)} parties; expected exactly 2 for kind psi",
                     "exactly 2 parties")
    protocol = params.get("protocol", DEFAULT_PSI_PROTOCOL)
    if protocol not in PSI_PROTOCOLS:
        problems.add("params.protocol", protocol, f"is not a PSI protocol; expected one of "
                     f"{', '.join(PSI_PROTOCOLS)}", ", ".join(PSI_PROTOCOLS))
    receiver = params.get("receiver", MISSING)
    if receiver not in ids:
        problems.add("params.receiver", receiver, f"is not a party of the job; expected one of "
                     f"{', '.join(ids)}", ", ".join(ids))
    broadcast = params.get("broadcast_result", True)
    if not isinstance(broadcast, bool):
        problems.add("params.broadcast_result", broadcast, "is not valid; expected true or false",
                     "true or false")

    inputs = params.get("inputs", MISSING)
    clean: dict[str, dict[str, Any]] = {}
    if not isinstance(inputs, Mapping):
        problems.add("params.inputs", inputs, f"is not valid; expected an object with "
                     f"{{path, keys}} for each party ({', '.join(ids)})", "{party: {path, keys}}")
        inputs = {}
    for pid in inputs:
        if pid not in ids:
            problems.add(f"params.inputs.{pid}", inputs[pid], f"is for a party not in the job; "
                         f"expected only {', '.join(ids)}", ", ".join(ids))
    for pid in ids:
        where = f"params.inputs.{pid}"
        entry = inputs.get(pid, MISSING)
        if not isinstance(entry, Mapping):
            if isinstance(inputs, Mapping) and inputs:
                problems.add(where, entry, "is not valid; expected {\"path\": "
                             "\"relative/file.csv\", \"keys\": [\"id\"]}", "{path, keys}")
            continue
        for key in entry:
            if key not in ("path", "keys"):
                problems.add(f"{where}.{key}", entry[key], "is not an input field; expected "
                             "only path, keys", "path, keys")
        path = _check_relative_path(f"{where}.path", entry.get("path", MISSING), config,
                                    problems)
        keys = entry.get("keys", MISSING)
        keys_ok = (
            isinstance(keys, list) and 1 <= len(keys) <= MAX_PSI_KEYS
            and all(isinstance(k, str) and k for k in keys) and len(set(keys)) == len(keys)
        )
        if not keys_ok:
            problems.add(f"{where}.keys", keys, f"is not valid; expected a list of "
                         f"1..{MAX_PSI_KEYS} distinct column names", "a list of column names")
        if path is not None and keys_ok:
            clean[pid] = {"path": path, "keys": list(keys)}
        if pid == config.node_id and path is not None and check_files:
            _check_own_input(where, entry["path"], path, keys if keys_ok else None, config,
                             problems)
    if len(clean) == 2:
        counts = {pid: len(v["keys"]) for pid, v in clean.items()}
        if len(set(counts.values())) != 1:
            problems.add("params.inputs", counts, "has a different number of keys per party; "
                         "expected the same number of key columns on both sides",
                         "equal key counts")
    return {"inputs": clean, "receiver": receiver, "protocol": protocol,
            "broadcast_result": broadcast}


def _check_own_input(where: str, given: str, normal: str, keys: list[str] | None,
                     config: NodeConfig, problems: Problems) -> None:
    full = config.data_dir / normal
    root = os.path.realpath(config.data_dir)
    real = os.path.realpath(full)
    if os.path.commonpath([root, real]) != root:
        problems.add(f"{where}.path", given, f"resolves to {real}, outside DATA_DIR ({root}); "
                     "expected a file inside DATA_DIR", "a file inside DATA_DIR")
        return
    if not os.path.isfile(real):
        problems.add(f"{where}.path", given, f"does not exist on party {config.node_id} "
                     f"({full}); expected an existing CSV file under DATA_DIR", "an existing file")
        return
    if keys:
        try:
            header = _csv_header(Path(real))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            problems.add(f"{where}.path", given, f"cannot be read as CSV ({exc}); expected a "
                         "CSV file with a header row", "a readable CSV file")
            return
        for key in keys:
            if key not in header:
                problems.add(f"{where}.keys", keys, f"names column {key!r}, which is not in "
                             f"the header of {full} (columns: {', '.join(header) or 'none'}); "
                             "expected existing column names", "existing column names")


_PARAM_VALIDATORS = {"ping": _ping_params, "spu_sum": _spu_sum_params, "psi": _psi_params}

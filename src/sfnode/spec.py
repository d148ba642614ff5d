"""Job specs: parse, expand and validate what a worker receives.

A spec is checked against this node's configuration and federation file
before anything runs: here what every job has (job id, kind, slot, deadline,
parties, and that they agree with this node on TLS), then its params by the
kind's own ``validate`` (``sfnode.kinds``). Every problem is collected and
reported at once, each naming the field (a dotted path such as
``parties[1].ip``), the value and what would be valid.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from sfnode import kinds
from sfnode.config import MAX_DEADLINE_SECONDS, NODE_ID_PATTERN, NODE_ID_RE, NodeConfig
from sfnode.federation import Federation, Party, check_node
from sfnode.jobspec import JobSpec, PartySpec
from sfnode.problems import MISSING, Problem, Problems, Style, is_int

JOB_ID_PATTERN = "[a-z0-9][a-z0-9-]{0,62}"
JOB_ID_RE = re.compile(JOB_ID_PATTERN)
TOP_LEVEL_KEYS = ("job_id", "kind", "slot", "deadline_seconds", "parties", "params")
PARTY_KEYS = ("id", "ip", "rayfed_port", "spu_port")

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


def _spec_problems(data: Any) -> Problems:
    """The collector of a spec's problems; a spec that is no object is refused at once."""
    problems = Problems(SPEC_STYLE)
    if not isinstance(data, Mapping):
        problems.add("(top level)", data, "is not a JSON object; expected a job spec object",
                     "a JSON object")
        problems.raise_if_any(SpecError)
    return problems


# --- expansion -----------------------------------------------------------------------------


def expand_spec(
    data: Mapping[str, Any], federation: Federation, default_deadline: int | None = None
) -> dict[str, Any]:
    """Expand a short spec (``parties`` as a list of ids) into a full one.

    Ports come from the federation file: slot ``k`` (default 0) is range start + k.
    A spec whose parties are already objects is returned unchanged apart from
    defaults (``deadline_seconds``, ``params``).
    """
    problems = _spec_problems(data)
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
    problems = _spec_problems(data)
    for node_problem in check_node(config, federation):
        problems.add("(node)", config.node_id,
                     f"cannot run jobs: this node's env file and federation file disagree: "
                     f"{node_problem}", "an env file that matches the federation file")

    problems.only("", data, TOP_LEVEL_KEYS, "is not a job spec field")

    job_id = data.get("job_id", MISSING)
    if not isinstance(job_id, str) or not JOB_ID_RE.fullmatch(job_id):
        problems.add("job_id", job_id,
                     f"is not a valid job id; expected {JOB_ID_PATTERN}", JOB_ID_PATTERN)

    registered = kinds.names()
    kind = data.get("kind", MISSING)
    problems.one_of("kind", kind, registered, "is not a known job kind")

    slot = data.get("slot", MISSING)
    slot_ok = is_int(slot) and slot >= 0
    if not slot_ok:
        problems.add("slot", slot, "is not a port slot; expected an integer >= 0",
                     "an integer >= 0")

    deadline = data.get("deadline_seconds", config.job_deadline_seconds)
    longest = config.job_max_deadline_seconds
    if not is_int(deadline) or not 1 <= deadline <= longest:
        problems.add("deadline_seconds", deadline,
                     f"is not a valid deadline; expected an integer of seconds in 1..{longest} "
                     f"(party {config.node_id} accepts at most {longest} s: its "
                     f"JOB_MAX_DEADLINE_SECONDS)", f"1..{longest}")

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
    if kind in registered and ids:
        check = kinds.ParamCheck(kind=kind, party_ids=ids, config=config, problems=problems,
                                 check_files=check_files)
        normalised = kinds.get(kind).validate(dict(params), check)

    problems.raise_if_any(SpecError)
    return JobSpec(job_id=job_id, kind=kind, slot=slot, deadline_seconds=deadline,
                   parties=tuple(parties), params=normalised)


def _check_tls(where: str, known: Party, config: NodeConfig, problems: Problems) -> None:
    """A peer uses TLS exactly when this node does: by its certificate in this node's
    federation file (never from the spec). This node's own entry is ``check_node``'s."""
    if known.id == config.node_id or known.tls == config.tls_enabled:
        return
    if config.tls_enabled:
        problems.add(f"{where}.id", known.id, "runs without TLS (no certificate in this node's "
                     "federation file); this node requires TLS on every link",
                     "a party with a certificate in this node's federation file")
    else:
        problems.add(f"{where}.id", known.id, "uses TLS; this node runs without it "
                     "(TLS_CERT/TLS_KEY empty); expected parties without a certificate in this "
                     "node's federation file, or TLS_CERT/TLS_KEY set on this node",
                     "a party without a certificate in this node's federation file")


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
        ok = problems.only(f"{where}.", item, PARTY_KEYS, "is not a party field")
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
        _check_tls(where, known, config, problems)
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

"""The federation file: every party's id, address and port ranges.

See docs/interfaces.md. A job's slot ``k`` uses port ``start + k`` of each of
a party's two ranges, so the slots of a job are bounded by the shortest range
of any participant.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfnode.config import NODE_ID_RE, PORT_MAX, PORT_MIN, NodeConfig, PortRange, ProblemsError

FEDERATION_VERSION = 1


class FederationError(ProblemsError):
    """Problems in a federation file."""

    what = "federation file"
    default_source = "federation"


@dataclass(frozen=True)
class Party:
    id: str
    ip: str
    rayfed_ports: PortRange
    spu_ports: PortRange

    @property
    def slots(self) -> int:
        """Number of port slots: concurrent jobs this party can take part in."""
        return min(len(self.rayfed_ports), len(self.spu_ports))

    def rayfed_port(self, slot: int) -> int:
        return self.rayfed_ports.port(slot)

    def spu_port(self, slot: int) -> int:
        return self.spu_ports.port(slot)

    def ports(self, slot: int) -> tuple[int, int]:
        """``(rayfed_port, spu_port)`` of ``slot``."""
        return self.rayfed_port(slot), self.spu_port(slot)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ip": self.ip,
            "rayfed_ports": [self.rayfed_ports.start, self.rayfed_ports.end],
            "spu_ports": [self.spu_ports.start, self.spu_ports.end],
        }


@dataclass(frozen=True)
class Federation:
    parties: tuple[Party, ...]
    version: int = FEDERATION_VERSION

    def __contains__(self, party_id: object) -> bool:
        return any(p.id == party_id for p in self.parties)

    def __iter__(self) -> Iterator[Party]:
        return iter(self.parties)

    def __len__(self) -> int:
        return len(self.parties)

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.parties]

    def get(self, party_id: str) -> Party | None:
        for party in self.parties:
            if party.id == party_id:
                return party
        return None

    def party(self, party_id: str) -> Party:
        party = self.get(party_id)
        if party is None:
            raise KeyError(
                f"party {party_id!r} is not in the federation file; known: {', '.join(self.ids)}"
            )
        return party

    def slots(self, party_ids: Iterable[str]) -> int:
        """Slots usable by a job of these parties: the fewest any of them has."""
        return min(self.party(pid).slots for pid in party_ids)

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "parties": [p.to_dict() for p in self.parties]}


def _parse_range(where: str, key: str, value: Any, problems: list[str]) -> PortRange | None:
    valid = f"[START, END] with {PORT_MIN} <= START <= END <= {PORT_MAX}"
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        problems.append(f"{where}.{key}: {value!r} is not valid; expected {valid}")
        return None
    start, end = value
    if not (PORT_MIN <= start <= end <= PORT_MAX):
        problems.append(f"{where}.{key}: {value!r} is not valid; expected {valid}")
        return None
    return PortRange(start, end)


def parse_federation(data: Any, source: str = "federation") -> Federation:
    problems: list[str] = []
    if not isinstance(data, dict):
        raise FederationError([f"top level is {type(data).__name__}; expected an object"], source)
    version = data.get("version")
    if version != FEDERATION_VERSION:
        problems.append(f"version: {version!r} is not supported; expected {FEDERATION_VERSION}")
    raw_parties = data.get("parties")
    if not isinstance(raw_parties, list) or not raw_parties:
        problems.append(f"parties: {raw_parties!r} is not valid; expected a non-empty list")
        raw_parties = []
    parties: list[Party] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_parties):
        where = f"parties[{index}]"
        if not isinstance(raw, dict):
            problems.append(f"{where}: {raw!r} is not valid; expected an object")
            continue
        pid = raw.get("id")
        if not isinstance(pid, str) or not NODE_ID_RE.fullmatch(pid):
            problems.append(f"{where}.id: {pid!r} is not valid; expected [a-z][a-z0-9_-]{{0,31}}")
            pid = None
        elif pid in seen:
            problems.append(f"{where}.id: {pid!r} appears twice; expected unique party ids")
        else:
            seen.add(pid)
        ip = raw.get("ip")
        try:
            ip = str(ipaddress.ip_address(ip)) if isinstance(ip, str) else None
        except ValueError:
            ip = None
        if ip is None:
            problems.append(f"{where}.ip: {raw.get('ip')!r} is not valid; expected an IP address")
        rayfed = _parse_range(where, "rayfed_ports", raw.get("rayfed_ports"), problems)
        spu = _parse_range(where, "spu_ports", raw.get("spu_ports"), problems)
        if rayfed and spu and rayfed.overlaps(spu):
            problems.append(
                f"{where}: rayfed_ports {rayfed} overlaps spu_ports {spu}; expected disjoint ranges"
            )
        if pid and ip and rayfed and spu:
            parties.append(Party(pid, ip, rayfed, spu))
    if problems:
        raise FederationError(problems, source)
    return Federation(tuple(parties), version)


def load_federation(path: str | os.PathLike[str]) -> Federation:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise FederationError([f"cannot read: {exc.strerror or exc}"], str(path)) from exc
    except json.JSONDecodeError as exc:
        raise FederationError([f"not valid JSON: {exc}"], str(path)) from exc
    return parse_federation(data, str(path))


def check_node(config: NodeConfig, federation: Federation) -> list[str]:
    """Disagreements between this node's env file and its entry in the federation file."""
    me = federation.get(config.node_id)
    source = str(config.federation_file)
    if me is None:
        return [
            f"NODE_ID={config.node_id!r} is not a party of {source}; "
            f"expected one of {', '.join(federation.ids)}"
        ]
    problems = []
    if me.ip != config.node_ip:
        problems.append(
            f"NODE_IP={config.node_ip!r} differs from {source} ({me.ip!r} for party {me.id})"
        )
    if me.rayfed_ports != config.rayfed_ports:
        problems.append(
            f"RAYFED_PORTS={str(config.rayfed_ports)!r} differs from {source} "
            f"({me.rayfed_ports} for party {me.id})"
        )
    if me.spu_ports != config.spu_ports:
        problems.append(
            f"SPU_PORTS={str(config.spu_ports)!r} differs from {source} "
            f"({me.spu_ports} for party {me.id})"
        )
    return problems

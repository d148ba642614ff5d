"""A validated job spec, as the supervisor, the runner and the job kinds read it.

:func:`sfnode.spec.validate_spec` builds it; the supervisor writes it to the
job's ``spec.json`` and the runner reads it back with :meth:`JobSpec.from_dict`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


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

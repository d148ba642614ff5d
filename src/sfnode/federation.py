"""The federation file: every party's id, address, port ranges and certificate.

See docs/interfaces.md. A job's slot ``k`` uses port ``start + k`` of each of
a party's two ranges, so the slots of a job are bounded by the shortest range
of any participant. A party's ``certificate`` (one PEM certificate, optional)
is what its peers trust for mutual TLS; a party without one runs without TLS.
A party whose certificate a CA of its organisation signed also has that CA's
certificate (``ca_certificate``): its peers trust the CA for it, as the chain
its certificate needs.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfnode.config import (ENV_STYLE, NODE_ID_PATTERN, NODE_ID_RE, PORT_MAX, PORT_MIN,
                           NodeConfig, PortRange, port_slots)
from sfnode.problems import MISSING, Problems, ProblemsError, Style, is_int

FEDERATION_VERSION = 1
# How the federation file's problems read: ``parties[1].ip: '10.89.0' is not valid; ...``.
FILE_STYLE = Style(with_value="{field}: {value} {reason}", without_value="{field}: {reason}")
PEM_BEGIN = "-----BEGIN CERTIFICATE-----"
PEM_END = "-----END CERTIFICATE-----"
# One PEM certificate block, nothing else but whitespace around it.
PEM_CERTIFICATE_RE = re.compile(rf"{PEM_BEGIN}\s*[A-Za-z0-9+/=][A-Za-z0-9+/=\s]*{PEM_END}")
PEM_EXPECTED = f"one PEM certificate ({PEM_BEGIN} ... {PEM_END}) or null"


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
    # Its PEM certificate, as the file has it; None: this party runs without TLS.
    certificate: str | None = None
    # The certificate of the CA that signed it; None: the certificate is self-signed.
    ca_certificate: str | None = None
    # The port of its job channel (sfnode.channel) on its ip; None: it has none.
    channel_port: int | None = None

    @property
    def trust_anchor(self) -> str | None:
        """What a peer puts in its trust bundle for this party: its CA, else its certificate."""
        return self.ca_certificate or self.certificate

    @property
    def tls(self) -> bool:
        return self.certificate is not None

    @property
    def slots(self) -> int:
        """Number of port slots: concurrent jobs this party can take part in."""
        return port_slots(self.rayfed_ports, self.spu_ports)

    def rayfed_port(self, slot: int) -> int:
        return self.rayfed_ports.port(slot)

    def spu_port(self, slot: int) -> int:
        return self.spu_ports.port(slot)

    def ports(self, slot: int) -> tuple[int, int]:
        """``(rayfed_port, spu_port)`` of ``slot``."""
        return self.rayfed_port(slot), self.spu_port(slot)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "ip": self.ip,
            "rayfed_ports": [self.rayfed_ports.start, self.rayfed_ports.end],
            "spu_ports": [self.spu_ports.start, self.spu_ports.end],
        }
        if self.certificate is not None:  # a file without certificates stays as it was
            data["certificate"] = self.certificate
        if self.ca_certificate is not None:
            data["ca_certificate"] = self.ca_certificate
        if self.channel_port is not None:
            data["channel_port"] = self.channel_port
        return data


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

    def trust_bundle(self, party_ids: Iterable[str]) -> str:
        """The trust anchors of these parties (each one's CA certificate, else its own
        certificate), one after another and each once: a TLS CA bundle.

        KeyError for a party not in the file, ValueError for one without a
        certificate: a job's parties all use TLS or none does (``validate_spec``).
        """
        pems: list[str] = []
        for pid in party_ids:
            anchor = self.party(pid).trust_anchor
            if anchor is None:
                raise ValueError(f"party {pid!r} has no certificate in the federation file")
            if anchor.strip() + "\n" not in pems:
                pems.append(anchor.strip() + "\n")
        return "".join(pems)

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "parties": [p.to_dict() for p in self.parties]}


def _parse_range(where: str, key: str, value: Any, problems: Problems) -> PortRange | None:
    valid = f"[START, END] with {PORT_MIN} <= START <= END <= {PORT_MAX}"
    if (isinstance(value, list) and len(value) == 2 and all(is_int(v) for v in value)
            and PORT_MIN <= value[0] <= value[1] <= PORT_MAX):
        return PortRange(value[0], value[1])
    problems.add(f"{where}.{key}", value, f"is not valid; expected {valid}", valid)
    return None


def _shown_pem(text: str) -> str:
    """A certificate as a problem shows it: its start, not its whole body."""
    return text if len(text) <= 40 else text[:37] + "..."


def _parse_certificate(where: str, value: Any, problems: Problems,
                       key: str = "certificate") -> str | None:
    """One PEM certificate block (its shape only), or None: the party runs without TLS
    (``ca_certificate``: its certificate is self-signed)."""
    field = f"{where}.{key}"
    if value is None:
        return None
    if not isinstance(value, str):
        problems.add(field, value, f"is not a string; expected {PEM_EXPECTED}",
                     PEM_EXPECTED)
        return None
    count = value.count(PEM_BEGIN)
    if count > 1:
        problems.add(field, _shown_pem(value), f"holds {count} certificates; expected "
                     f"{PEM_EXPECTED}", PEM_EXPECTED)
        return None
    if not PEM_CERTIFICATE_RE.fullmatch(value.strip()):
        problems.add(field, _shown_pem(value), f"is not a PEM certificate; expected "
                     f"{PEM_EXPECTED}", PEM_EXPECTED)
        return None
    return value


def _parse_party(where: str, raw: Any, seen: set[str], problems: Problems) -> Party | None:
    if not isinstance(raw, dict):
        problems.add(where, raw, "is not valid; expected an object", "an object")
        return None
    pid = raw.get("id")
    if not isinstance(pid, str) or not NODE_ID_RE.fullmatch(pid):
        problems.add(f"{where}.id", pid, f"is not valid; expected {NODE_ID_PATTERN}",
                     NODE_ID_PATTERN)
        pid = None
    elif pid in seen:
        problems.add(f"{where}.id", pid, "appears twice; expected unique party ids",
                     "a unique party id")
    else:
        seen.add(pid)
    ip = raw.get("ip")
    try:
        ip = str(ipaddress.ip_address(ip)) if isinstance(ip, str) else None
    except ValueError:
        ip = None
    if ip is None:
        problems.add(f"{where}.ip", raw.get("ip"), "is not valid; expected an IP address",
                     "an IP address")
    rayfed = _parse_range(where, "rayfed_ports", raw.get("rayfed_ports"), problems)
    spu = _parse_range(where, "spu_ports", raw.get("spu_ports"), problems)
    if rayfed and spu and rayfed.overlaps(spu):
        problems.add(where, MISSING, f"rayfed_ports {rayfed} overlaps spu_ports {spu}; "
                     "expected disjoint ranges", "disjoint ranges")
    certificate = _parse_certificate(where, raw.get("certificate"), problems)
    ca_certificate = _parse_certificate(where, raw.get("ca_certificate"), problems, "ca_certificate")
    if ca_certificate is not None and raw.get("certificate") is None:
        problems.add(f"{where}.ca_certificate", _shown_pem(ca_certificate), "is set but the party "
                     "has no certificate; expected both (a CA-signed party) or neither",
                     "no ca_certificate without a certificate")
    channel_port = raw.get("channel_port")
    if channel_port is not None and not (is_int(channel_port) and PORT_MIN <= channel_port <= PORT_MAX):
        problems.add(f"{where}.channel_port", channel_port, f"is not valid; expected a port in "
                     f"{PORT_MIN}..{PORT_MAX} or null", f"{PORT_MIN}..{PORT_MAX}")
        channel_port = None
    if channel_port is not None and certificate is None:
        problems.add(f"{where}.channel_port", channel_port, "is set but the party has no "
                     "certificate; expected a certificate too (the job channel is mutual TLS)",
                     "a certificate")
    if pid and ip and rayfed and spu:
        return Party(pid, ip, rayfed, spu, certificate, ca_certificate, channel_port)
    return None


def parse_federation(data: Any, source: str = "federation") -> Federation:
    problems = Problems(FILE_STYLE)
    if not isinstance(data, dict):
        problems.add("", data, f"top level is {type(data).__name__}; expected an object",
                     "an object")
        problems.raise_if_any(lambda found: FederationError(found, source))
    version = data.get("version")
    if version != FEDERATION_VERSION:
        problems.add("version", version, f"is not supported; expected {FEDERATION_VERSION}",
                     str(FEDERATION_VERSION))
    raw_parties = data.get("parties")
    if not isinstance(raw_parties, list) or not raw_parties:
        problems.add("parties", raw_parties, "is not valid; expected a non-empty list",
                     "a non-empty list")
        raw_parties = []
    seen: set[str] = set()
    parsed = [_parse_party(f"parties[{i}]", raw, seen, problems)
              for i, raw in enumerate(raw_parties)]
    problems.raise_if_any(lambda found: FederationError(found, source))
    return Federation(tuple(p for p in parsed if p is not None), version)


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
    problems = Problems(ENV_STYLE)
    me = federation.get(config.node_id)
    source = str(config.federation_file)
    if me is None:
        problems.add("NODE_ID", config.node_id, f"is not a party of {source}; expected one of "
                     f"{', '.join(federation.ids)}", ", ".join(federation.ids))
        return problems.messages
    if me.ip != config.node_ip:
        problems.add("NODE_IP", config.node_ip, f"differs from {source} ({me.ip!r} for party "
                     f"{me.id})", me.ip)
    for key, mine, theirs in (("RAYFED_PORTS", config.rayfed_ports, me.rayfed_ports),
                              ("SPU_PORTS", config.spu_ports, me.spu_ports)):
        if mine != theirs:
            problems.add(key, str(mine), f"differs from {source} ({theirs} for party {me.id})",
                         str(theirs))
    _check_own_certificate(config, me, source, problems)
    return problems.messages


def _check_own_certificate(config: NodeConfig, me: Party, source: str,
                           problems: Problems) -> None:
    """TLS on this node exactly when its entry has a certificate, and the same certificate."""
    cert_file = config.tls_cert if config.tls_enabled else None
    if cert_file is None:
        if me.certificate is not None:
            problems.add("TLS_CERT", MISSING, f"is empty but party {me.id} has a certificate in "
                         f"{source}, so its peers require TLS of it; expected TLS_CERT and "
                         f"TLS_KEY set to this node's certificate and key, or no certificate in "
                         f"party {me.id}'s entry", "an absolute path")
        return
    shown = str(cert_file)
    if me.certificate is None:
        problems.add("TLS_CERT", shown, f"is set but party {me.id} has no certificate in "
                     f"{source}; expected party {me.id}'s entry to carry this certificate "
                     f"(re-render the federation file), or TLS_CERT and TLS_KEY empty to run "
                     f"without TLS", "a certificate in the federation file")
        return
    try:
        mine = cert_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        error = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        problems.add("TLS_CERT", shown, f"cannot be read ({error}); expected a PEM file "
                     f"readable by this user holding party {me.id}'s certificate",
                     "a readable PEM file")
        return
    if mine.strip() != me.certificate.strip():
        problems.add("TLS_CERT", shown, f"holds another certificate than party {me.id}'s entry "
                     f"in {source}; expected the same certificate (re-render the federation "
                     f"file after this node's certificate changed)", "the federation file's "
                     "certificate")

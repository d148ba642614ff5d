"""The federation from its parties' facts.

Input: one mapping per party, the fact __node_party that
roles/node/tasks/preflight.yml sets (host, id, ip, the two SecretFlow ranges,
and the node's other ports).

- federation_problems: every inventory problem of a federation, at once, each
  naming the party, the variable, the value and what would be valid; empty
  when the federation is sound.
- federation_document: the federation file (docs/interfaces.md).
- port_slots: how many jobs a party can run at once.
"""
from __future__ import annotations

import ipaddress
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

# What a valid id and port are is the worker app's to say (it checks the
# same values in the env file and the federation file).
try:
    from sfnode.config import NODE_ID_RE, PORT_MAX, PORT_MIN, PortRange
    from sfnode.config import port_slots as _app_port_slots
    from sfnode.federation import FEDERATION_VERSION
except ImportError:  # a controller venv without the app installed: use the checkout's
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "src"))
    from sfnode.config import NODE_ID_RE, PORT_MAX, PORT_MIN, PortRange
    from sfnode.config import port_slots as _app_port_slots
    from sfnode.federation import FEDERATION_VERSION

RANGES = ("node_rayfed_ports", "node_spu_ports")


def _range(party: dict[str, Any], name: str, problems: list[str]) -> range | None:
    value = party.get(name)
    where = f"party {party['id']} ({party['host']}): {name}"
    if not isinstance(value, dict) or not {"start", "end"} <= set(value):
        problems.append(f"{where} is {value!r}; expected {{start: PORT, end: PORT}}")
        return None
    try:
        start, end = int(value["start"]), int(value["end"])
    except (TypeError, ValueError):
        problems.append(f"{where} is {value!r}; start and end must be whole numbers")
        return None
    if start > end:
        problems.append(f"{where} is {start}-{end}: start is after end; expected start <= end")
        return None
    if start < PORT_MIN or end > PORT_MAX:
        problems.append(f"{where} is {start}-{end}; expected ports within {PORT_MIN}-{PORT_MAX}")
        return None
    return range(start, end + 1)


def port_slots(rayfed: Any, spu: Any) -> int:
    """Jobs a party can run at once: a job takes one port of each range. 0
    when a range is malformed (federation_problems names it)."""
    try:
        ranges = [PortRange(int(r["start"]), int(r["end"])) for r in (rayfed, spu)]
        return _app_port_slots(*ranges)
    except (KeyError, TypeError, ValueError):  # an inverted range has no length either
        return 0


def channel_port(party: dict[str, Any]) -> int | None:
    """The port of a party's job channel; None when it has none (or the value is no port:
    the job channel role's preflight names it)."""
    value = party.get("channel_port")
    if isinstance(value, bool) or value is None or not str(value).isdigit():
        return None
    return int(value)


def federation_document(parties: Any) -> dict[str, Any]:
    """The federation file: every party's id, address and two ranges
    (rayfed_ports, spu_ports: [start, end]), and its TLS certificate when it
    has one (with the certificate of the CA that signed it, if one did, and the port of its
    job channel, if it has one), by id."""
    return {"version": FEDERATION_VERSION, "parties": sorted(
        ({"id": p["id"], "ip": p["ip"],
          **{name.removeprefix("node_"): [int(p[name]["start"]), int(p[name]["end"])] for name in RANGES},
          **({"certificate": p["certificate"]} if p.get("certificate") else {}),
          **({"ca_certificate": p["ca_certificate"]} if p.get("certificate") and p.get("ca_certificate") else {}),
          **({"channel_port": channel_port(p)} if p.get("certificate") and channel_port(p) else {})}
         for p in parties), key=lambda p: p["id"])}


def _span(ports: range) -> str:
    return f"{ports.start}-{ports.stop - 1}"


def _party_problems(party: dict[str, Any], many: bool, problems: list[str]) -> dict[str, range]:
    where = f"party {party['id']} ({party['host']})"
    if not isinstance(party["id"], str) or not NODE_ID_RE.fullmatch(party["id"]):
        problems.append(f"{where}: node_id is {party['id']!r}; expected a lowercase letter, then up to 31 "
                        "lowercase letters, digits, '-' or '_'")
    try:
        ip = ipaddress.ip_address(str(party["ip"]))
    except ValueError:
        problems.append(f"{where}: node_ip is {party['ip']!r}, not an IP address; expected the address "
                        "its peers reach it on")
    else:
        if ip.is_unspecified:
            problems.append(f"{where}: node_ip is {ip}, which names no host; expected the address its peers "
                            "reach it on")
        elif ip.is_loopback and many:
            problems.append(f"{where}: node_ip is {ip}, a loopback address, in a federation of several "
                            "parties; expected an address the other parties can reach")
    ranges = {name: r for name in RANGES if (r := _range(party, name, problems)) is not None}
    if len(ranges) == 2 and set(ranges["node_rayfed_ports"]) & set(ranges["node_spu_ports"]):
        problems.append(f"{where}: node_rayfed_ports {_span(ranges['node_rayfed_ports'])} and node_spu_ports "
                        f"{_span(ranges['node_spu_ports'])} overlap; expected disjoint ranges")
    fixed = {"redis_port": party.get("redis_port"), "ray_head_port": party.get("ray_head_port"),
             "job_channel_port": channel_port(party)}
    fixed |= {f"ray_head_aux_ports.{k}": v for k, v in (party.get("ray_head_aux_ports") or {}).items()}
    others: dict[str, range] = {name: range(int(port), int(port) + 1)
                                for name, port in fixed.items() if port is not None}
    workers = party.get("ray_head_worker_ports")
    if isinstance(workers, dict) and {"start", "end"} <= set(workers):
        others["ray_head_worker_ports"] = range(int(workers["start"]), int(workers["end"]) + 1)
    for name, ports in ranges.items():
        for other, taken in others.items():
            clash = sorted(set(ports) & set(taken))
            if clash:
                shown = str(clash[0]) if len(taken) == 1 else f"{_span(taken)}"
                problems.append(f"{where}: {name} {_span(ports)} overlaps {other} ({shown}); expected a range "
                                "clear of the node's other ports")
    return ranges


def federation_problems(parties: list[dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    many = len(parties) > 1
    by_id: dict[str, list[str]] = defaultdict(list)
    endpoints: dict[tuple[str, int], list[str]] = defaultdict(list)
    for party in parties:
        by_id[str(party["id"])].append(party["host"])
        for ports in _party_problems(party, many, problems).values():
            for port in ports:
                endpoints[(str(party["ip"]), port)].append(str(party["id"]))
    for node_id, hosts in sorted(by_id.items()):
        if len(hosts) > 1:
            problems.append(f"node_id {node_id!r} is used by hosts {', '.join(hosts)}; expected one id per party")
    clashes: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for (ip, port), ids in endpoints.items():
        if len(set(ids)) > 1:
            clashes[(ip, *sorted(set(ids)))].append(port)
    for (ip, *ids), ports in sorted(clashes.items()):
        problems.append(f"parties {', '.join(ids)} share node_ip {ip} and the ports {min(ports)}-{max(ports)}; "
                        "expected disjoint port ranges for parties on one address")
    return problems


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"federation_problems": federation_problems, "federation_document": federation_document,
                "port_slots": port_slots}

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sfnode.config import NodeConfig, PortRange
from sfnode.federation import FederationError, check_node, load_federation, parse_federation


def test_load_federation_file(tmp_path: Path, federation_data: dict[str, Any]) -> None:
    path = tmp_path / "federation.json"
    path.write_text(json.dumps(federation_data))
    fed = load_federation(path)
    assert fed.ids == ["alice", "bob", "carol"]
    bob = fed.party("bob")
    assert bob.ip == "10.89.0.3"
    assert bob.rayfed_ports == PortRange(20000, 20031)
    assert "carol" in fed and "dave" not in fed


def test_slot_to_ports(federation_data: dict[str, Any]) -> None:
    fed = parse_federation(federation_data)
    assert fed.party("alice").ports(0) == (20000, 21000)
    assert fed.party("alice").ports(31) == (20031, 21031)
    assert fed.party("carol").ports(2) == (30002, 31002)
    assert fed.party("carol").slots == 4
    with pytest.raises(IndexError, match="slot 4 is outside 0..3"):
        fed.party("carol").rayfed_port(4)


def test_slots_bounded_by_shortest_range(federation_data: dict[str, Any]) -> None:
    federation_data["parties"][1]["spu_ports"] = [21000, 21009]
    fed = parse_federation(federation_data)
    assert fed.party("bob").slots == 10
    assert fed.slots(["alice", "bob"]) == 10
    assert fed.slots(["alice", "bob", "carol"]) == 4


def test_every_problem_named(federation_data: dict[str, Any]) -> None:
    parties = federation_data["parties"]
    parties[1]["id"] = "alice"
    parties[2]["ip"] = "10.89.0"
    parties[2]["rayfed_ports"] = [30010, 30000]
    federation_data["version"] = 2
    with pytest.raises(FederationError) as err:
        parse_federation(federation_data, "fed.json")
    text = str(err.value)
    assert "(fed.json)" in text
    assert "version: 2 is not supported; expected 1" in text
    assert "parties[1].id: 'alice' appears twice" in text
    assert "parties[2].ip: '10.89.0' is not valid; expected an IP address" in text
    assert "parties[2].rayfed_ports: [30010, 30000] is not valid" in text


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(FederationError, match="cannot read"):
        load_federation(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(FederationError, match="not valid JSON"):
        load_federation(bad)


def test_check_node_against_env(config: NodeConfig, federation_data: dict[str, Any]) -> None:
    assert check_node(config, parse_federation(federation_data)) == []
    federation_data["parties"][0]["ip"] = "10.89.0.9"
    problems = check_node(config, parse_federation(federation_data))
    assert problems == [f"NODE_IP='10.89.0.2' differs from {config.federation_file} "
                        "('10.89.0.9' for party alice)"]

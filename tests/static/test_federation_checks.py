"""The cross-party inventory checks (roles/node/filter_plugins/federation.py):
every problem of every party reported at once, each naming the party, the
variable, the value and what would be valid."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[2] / "roles/node/filter_plugins/federation.py"
spec = importlib.util.spec_from_file_location("federation_checks", PLUGIN)
checks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(checks)


def party(host: str, **overrides):
    base = {"host": host, "id": host, "ip": {"alice": "10.0.0.2", "bob": "10.0.0.3", "carol": "10.0.0.4"}[host],
            "node_rayfed_ports": {"start": 20000, "end": 20031}, "node_spu_ports": {"start": 21000, "end": 21031},
            "redis_port": 60379, "ray_head_port": 61379,
            "ray_head_aux_ports": {"client_server": 61380, "node_manager": 61385},
            "ray_head_worker_ports": {"start": 22000, "end": 22999}}
    return {**base, **overrides}


def test_a_sound_federation_has_no_problems():
    assert checks.federation_problems([party("alice"), party("bob"), party("carol")]) == []


CASES = {
    "bad node id": ({"id": "Alice!"}, ["party Alice! (alice)", "node_id is 'Alice!'", "lowercase letter"]),
    "not an IP": ({"ip": "10.0.0.300"}, ["party alice", "node_ip is '10.0.0.300'", "not an IP address"]),
    "unspecified IP": ({"ip": "0.0.0.0"}, ["party alice", "node_ip is 0.0.0.0", "names no host"]),
    "loopback IP with peers": ({"ip": "127.0.0.1"}, ["party alice", "node_ip is 127.0.0.1", "loopback",
                                                     "other parties can reach"]),
    "inverted range": ({"node_rayfed_ports": {"start": 20031, "end": 20000}},
                       ["party alice", "node_rayfed_ports is 20031-20000", "start <= end"]),
    "range below 1024": ({"node_spu_ports": {"start": 500, "end": 531}},
                         ["party alice", "node_spu_ports is 500-531", "1024-65535"]),
    "range above 65535": ({"node_spu_ports": {"start": 65530, "end": 65600}},
                          ["node_spu_ports is 65530-65600", "1024-65535"]),
    "range not a mapping": ({"node_rayfed_ports": "20000-20031"},
                            ["node_rayfed_ports is '20000-20031'", "{start: PORT, end: PORT}"]),
    "range not numbers": ({"node_rayfed_ports": {"start": "a", "end": 5}}, ["whole numbers"]),
    "the two ranges overlap": ({"node_spu_ports": {"start": 20010, "end": 20041}},
                               ["node_rayfed_ports 20000-20031 and node_spu_ports 20010-20041 overlap"]),
    "range over Ray's worker ports": ({"node_spu_ports": {"start": 22990, "end": 23010}},
                                      ["node_spu_ports 22990-23010 overlaps ray_head_worker_ports (22000-22999)"]),
    "range over the Redis port": ({"node_rayfed_ports": {"start": 60370, "end": 60401}},
                                  ["node_rayfed_ports 60370-60401 overlaps redis_port (60379)"]),
    "range over the Ray GCS port": ({"node_rayfed_ports": {"start": 61370, "end": 61379}},
                                    ["overlaps ray_head_port (61379)"]),
    "range over another Ray port": ({"node_spu_ports": {"start": 61384, "end": 61390}},
                                    ["overlaps ray_head_aux_ports.node_manager (61385)"]),
}


@pytest.mark.parametrize("overrides,expected", CASES.values(), ids=CASES.keys())
def test_each_problem_is_named(overrides, expected):
    problems = checks.federation_problems([party("alice", **overrides), party("bob")])
    text = "\n".join(problems)
    for fragment in expected:
        assert fragment in text, f"{fragment!r} not in {problems}"


def test_duplicate_ids_are_named_with_their_hosts():
    problems = checks.federation_problems([party("alice"), party("bob", id="alice")])
    assert "node_id 'alice' is used by hosts alice, bob" in "\n".join(problems)


def test_parties_sharing_an_address_need_disjoint_ranges():
    problems = checks.federation_problems([party("alice"), party("bob", ip="10.0.0.2")])
    assert any("parties alice, bob share node_ip 10.0.0.2 and the ports 20000-21031" in p for p in problems), problems
    ok = checks.federation_problems([party("alice"), party("bob", ip="10.0.0.2",
                                                        node_rayfed_ports={"start": 20100, "end": 20131},
                                                        node_spu_ports={"start": 21100, "end": 21131})])
    assert ok == []


def test_every_problem_is_reported_at_once():
    problems = checks.federation_problems([
        party("alice", ip="nowhere", node_spu_ports={"start": 9, "end": 1}),
        party("bob", id="alice"), party("carol", ip="127.0.0.1")])
    assert len(problems) == 4, problems


def test_a_lone_party_may_use_loopback():
    assert checks.federation_problems([party("alice", ip="127.0.0.1")]) == []


def test_the_federation_file_lists_every_party_by_id():
    doc = checks.federation_document([party("bob"), party("alice", node_rayfed_ports={"start": "20100", "end": 20131})])
    assert doc == {"version": 1, "parties": [
        {"id": "alice", "ip": "10.0.0.2", "rayfed_ports": [20100, 20131], "spu_ports": [21000, 21031]},
        {"id": "bob", "ip": "10.0.0.3", "rayfed_ports": [20000, 20031], "spu_ports": [21000, 21031]}]}


def test_a_party_has_a_port_slot_per_port_of_its_smaller_range():
    assert checks.port_slots({"start": 20000, "end": 20031}, {"start": 21000, "end": 21015}) == 16


@pytest.mark.parametrize("bad", ["20000-20031", {"start": 20000}, {"start": 20031, "end": 20000},
                                 {"start": "a", "end": 20031}])
def test_a_malformed_range_gives_no_slots(bad):
    assert checks.port_slots(bad, {"start": 21000, "end": 21031}) == 0

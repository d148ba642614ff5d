"""The federation status of playbooks/status.yml (playbooks/filter_plugins/status.py):
the nodes' reports become one document, a matrix and a verdict naming every
problem with its party."""
from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "playbooks/filter_plugins/status.py"
spec = importlib.util.spec_from_file_location("status_filters", PLUGIN)
status = importlib.util.module_from_spec(spec)
spec.loader.exec_module(status)

# the units as the roles name them
REDIS = yaml.safe_load((ROOT / "roles/redis/vars/main.yml").read_text())["redis_unit"]
RAY = yaml.safe_load((ROOT / "roles/ray_head/vars/main.yml").read_text())["ray_head_unit"]

IPS = {"alice": "10.0.0.2", "bob": "10.0.0.3", "carol": "10.0.0.4"}


def report(pid: str, peers=("alice", "bob", "carol"), **overrides):
    base = {
        "ok": True, "node_id": pid, "node_ip": IPS[pid], "problems": [],
        "units": {REDIS: {"what": "Redis", "active": "active", "sub": "running", "uptime_seconds": 3725},
                  RAY: {"what": "Ray head", "active": "active", "sub": "running", "uptime_seconds": 59}},
        "versions": {"python": "3.10.16", "secretflow": "1.12.0b0"},
        "redis": {"answers": True, "used_memory": 1048576, "maxmemory": 268435456,
                  "maxmemory_policy": "noeviction", "aof_enabled": True, "aof_last_write_status": "ok",
                  "queue_length": 0},
        "ray": {"answers": True, "address": f"{IPS[pid]}:61379", "nodes": 1,
                "resources": {"CPU": 2.0, "object_store_memory": 1073741824.0, "memory": 4e9}},
        "celery": {"answers": True, "round_trip_ms": 30, "workers": [f"{pid}@host"]},
        "sockets": {"expected": {"redis": "127.0.0.1:60379"}, "listens": {"redis": True}},
        "reachability": {p: {"ip": IPS[p], "rayfed_port": 20000, "spu_port": 21000, "rayfed": "refused",
                             "spu": "refused", "open": True} for p in peers if p != pid},
    }
    base.update(overrides)
    return base


def test_a_healthy_federation():
    doc = status.status_federation([report(p) for p in ("bob", "alice", "carol")])
    assert doc["ok"] is True and doc["problems"] == []
    assert doc["verdict"] == "VERDICT: HEALTHY: 3 parties (alice, bob, carol), every check passed"
    assert doc["matrix"]["alice"] == {"alice": "-", "bob": "open", "carol": "open"}
    text = status.status_lines(doc)
    assert text[-1] == doc["verdict"]
    assert "== alice (10.0.0.2): ok" in text
    assert "units:    Redis active (up 1h02m), Ray head active (up 59s)" in text
    assert any(line.startswith("redis:    answers with the password, memory 1.0 MiB of 256.0 MiB") for line in text)
    rows = [line for line in text if " | " in line]
    assert rows[0].split(" | ")[0].strip() == "from \\ to"
    assert [r.split(" | ")[0].strip() for r in rows[1:]] == ["alice", "bob", "carol"]


def test_every_problem_is_named_with_its_party():
    bob = report("bob", ok=False, problems=[f"Ray head ({RAY}) is inactive (dead)"])
    doc = status.status_federation([report("alice"), bob, report("carol")])
    assert doc["ok"] is False
    assert doc["problems"] == [f"bob: Ray head ({RAY}) is inactive (dead)"]
    assert doc["verdict"] == f"VERDICT: UNHEALTHY: 1 problem(s): bob: Ray head ({RAY}) is inactive (dead)"
    assert "\n" not in doc["verdict"]


def test_units_are_listed_in_the_order_of_the_report():
    alice = report("alice")
    alice["units"] = dict(reversed(alice["units"].items()))
    text = status.status_lines(status.status_federation([alice]))
    assert "units:    Ray head active (up 59s), Redis active (up 1h02m)" in text


def test_a_filtered_port_shows_in_the_matrix():
    alice = report("alice")
    alice["reachability"]["bob"].update(spu="filtered", open=False)
    alice["reachability"]["carol"].update(spu="filtered", rayfed="filtered", open=False)
    doc = status.status_federation([alice, report("bob"), report("carol")])
    assert doc["matrix"]["alice"]["bob"] == "spu filtered"
    assert doc["matrix"]["alice"]["carol"] == "BLOCKED"


def test_federation_files_that_disagree_with_the_run():
    doc = status.status_federation([report("alice", peers=("alice", "bob")), report("bob"), report("carol")])
    assert "alice: its federation file does not list carol (run site.yml)" in doc["problems"]
    doc = status.status_federation([report("alice"), report("bob")])
    assert any(p.startswith("alice: its federation file lists carol") for p in doc["problems"])
    assert status.status_federation([report("alice"), report("bob")], limited=True)["ok"] is True


def test_an_unreachable_host_and_a_failed_probe():
    broken = {"ok": False, "node_id": "carol", "problems": ["sfnode status did not run (rc 2): boom"]}
    doc = status.status_federation([report("alice", peers=("alice", "carol")), broken], missing=["sff-bob"])
    assert "carol: sfnode status did not run (rc 2): boom" in doc["problems"]
    assert "sff-bob: no report (unreachable, or the status run failed there)" in doc["problems"]
    assert doc["matrix"]["carol"]["alice"] == "n/a"
    text = status.status_lines(copy.deepcopy(doc))
    assert "== carol (?): UNHEALTHY" in text


def test_no_report_at_all_is_unhealthy():
    doc = status.status_federation([], missing=["sff-alice"])
    assert doc["ok"] is False and "no party reported" in doc["verdict"]


def test_a_party_of_another_organisation_is_no_problem_when_its_card_is_listed():
    """alice and bob are this inventory's; carol is another organisation's (a card): she reports to hers."""
    reports = [report("alice"), report("bob")]
    unknown = status.status_federation(reports)
    assert unknown["ok"] is False
    assert "alice: its federation file lists carol, which is not in this run" in unknown["verdict"]
    doc = status.status_federation(reports, outside=["carol"])
    assert doc["ok"] is True, doc["problems"]


def test_a_certificate_near_its_end_is_a_warning_named_with_its_party_not_a_problem():
    alice = report("alice", peers=("alice", "bob"),
                   certificates=[{"party": "bob", "tls": True, "not_after": "2026-12-10T00:00:00Z", "days_left": 13}],
                   warnings=["certificate of bob: expires 2026-12-10T00:00:00Z (13 days left)"])
    doc = status.status_federation([alice, report("bob", peers=("alice", "bob"))])
    assert doc["ok"] is True
    assert doc["warnings"] == ["alice: certificate of bob: expires 2026-12-10T00:00:00Z (13 days left)"]
    text = status.status_lines(doc)
    assert "certs:    bob until 2026-12-10 (13 days)" in text
    assert text[-2] == "WARNING: alice: certificate of bob: expires 2026-12-10T00:00:00Z (13 days left)"

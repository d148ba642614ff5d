"""Before and as carol joins: the firewall of a two-party federation, then
carol added by an inventory edit and site.yml, with nobody restarted."""
from __future__ import annotations

import json
import time

from conftest import PARTIES, connects, node_ip, psi_spec, start_stamps, unique_job_id, upload_psi_input

TABLE = "nft list table inet secretflow"


def federation_file(host) -> dict[str, str]:
    doc = json.loads(host.file("/etc/secretflow/federation.json").content_string)
    for p in doc["parties"]:
        assert p["rayfed_ports"] == [20000, 20031] and p["spu_ports"] == [21000, 21031]
    return {p["id"]: p["ip"] for p in doc["parties"]}


def test_federation_files_list_the_converged_parties(party_hosts):
    expected = {pid: node_ip(party_hosts[pid]) for pid in ("alice", "bob")}
    for pid in expected:
        assert federation_file(party_hosts[pid]) == expected, pid


def test_firewall_opens_the_ranges_to_peers_only(party_hosts):
    """carol is not (yet) a party: she is the outsider here."""
    alice, bob, carol = (party_hosts[p] for p in ("alice", "bob", "carol"))
    ip = node_ip(alice)
    # something to connect to on alice's first rayfed and SPU ports, for a minute
    for port in (20000, 21000):
        alice.run_expect([0], f"systemd-run --unit=fwtest-{port} --collect timeout 90 python3 -m http.server {port}")
    deadline = time.monotonic() + 15
    while not (connects(alice, ip, 20000) and connects(alice, ip, 21000)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert connects(alice, ip, 20000) and connects(alice, ip, 61379), "alice's own ports answer locally"
    assert connects(bob, ip, 20000), "a peer reaches the rayfed port"
    assert connects(bob, ip, 21000), "a peer reaches the SPU port"
    assert not connects(carol, ip, 20000), "a non-peer must not reach the rayfed port"
    assert not connects(carol, ip, 21000), "a non-peer must not reach the SPU port"
    for port in (61379, 60379, 61380, 22000):  # Ray GCS, Redis, Ray client server, a Ray worker port
        assert not connects(bob, ip, port), f"port {port} must be closed to the network"
    rules = alice.check_output(TABLE)
    assert node_ip(bob) in rules and node_ip(carol) not in rules, rules
    assert 'counter packets 0 bytes 0 drop comment "not a party' not in rules, rules


def test_a_new_party_is_provisioned_and_nobody_is_restarted(jobs, party_hosts, tmp_path):
    members = {p: party_hosts[p] for p in ("alice", "bob")}
    before = start_stamps(members)
    jobs.carol_joins()
    run = jobs.playbook("site.yml")
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    assert start_stamps(members) == before, "a party's services restarted when carol joined"
    expected = {pid: node_ip(h) for pid, h in party_hosts.items()}
    for pid, host in party_hosts.items():
        assert federation_file(host) == expected, pid
    assert node_ip(party_hosts["carol"]) in party_hosts["bob"].check_output(TABLE)
    # carol works with an existing party at once (through bob's updated firewall)
    path = upload_psi_input(jobs, "bob", tmp_path)
    upload_psi_input(jobs, "carol", tmp_path)
    psi = jobs.run(psi_spec("bob", "carol", 4, path))
    assert psi.rc == 0, psi
    for pid in ("bob", "carol"):
        assert psi.results[pid]["result"]["intersection_count"] == 500, psi
    ping = jobs.run({"job_id": unique_job_id("ping"), "kind": "ping", "parties": list(PARTIES), "slot": 0})
    assert ping.rc == 0, ping

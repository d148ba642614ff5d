"""Before and as carol joins: the firewall of a two-party federation (carol
the outsider: this runs before any test asks for carol_joined), then carol
added by an inventory edit and site.yml (carol_joined), with nobody
restarted."""
from __future__ import annotations

import json

from conftest import PARTIES, connects, node_ip, psi_spec, start_stamps, unique_job_id, upload_psi_input
from shared import CHANNEL, FIREWALL, NODE, RAY_HEAD, REDIS, wait_for

TABLE = f"nft list table inet {FIREWALL['firewall_table']}"
RAYFED, SPU = NODE["node_rayfed_ports"], NODE["node_spu_ports"]


def federation_file(host) -> dict[str, str]:
    doc = json.loads(host.file(f"{NODE['node_config_dir']}/federation.json").content_string)
    for p in doc["parties"]:
        assert p["rayfed_ports"] == [RAYFED["start"], RAYFED["end"]] and p["spu_ports"] == [SPU["start"], SPU["end"]]
    return {p["id"]: p["ip"] for p in doc["parties"]}


def test_federation_files_list_the_converged_parties(party_hosts):
    expected = {pid: node_ip(party_hosts[pid]) for pid in ("alice", "bob")}
    for pid in expected:
        assert federation_file(party_hosts[pid]) == expected, pid


def test_firewall_opens_the_ranges_to_peers_only(party_hosts):
    """carol is not (yet) a party: she is the outsider here."""
    alice, bob, carol = (party_hosts[p] for p in ("alice", "bob", "carol"))
    ip = node_ip(alice)
    rayfed, spu, gcs = RAYFED["start"], SPU["start"], RAY_HEAD["ray_head_port"]
    # something to connect to on alice's first rayfed and SPU ports, for a minute
    for port in (rayfed, spu):
        alice.run_expect([0], f"systemd-run --unit=fwtest-{port} --collect timeout 90 python3 -m http.server {port}")
    wait_for(lambda: connects(alice, ip, rayfed) and connects(alice, ip, spu), 15,
             "alice's own rayfed and SPU ports answer locally", step=0.5)
    assert connects(alice, ip, gcs), "alice's own GCS answers locally"
    assert connects(bob, ip, rayfed), "a peer reaches the rayfed port"
    assert connects(bob, ip, spu), "a peer reaches the SPU port"
    assert not connects(carol, ip, rayfed), "a non-peer must not reach the rayfed port"
    assert not connects(carol, ip, spu), "a non-peer must not reach the SPU port"
    channel = CHANNEL["job_channel_port"]
    assert connects(bob, ip, channel), "a peer reaches the job channel"
    assert not connects(carol, ip, channel), "a non-peer must not reach the job channel"
    closed = {"the Ray GCS": gcs, "Redis": REDIS["redis_port"],
              "Ray's client server": RAY_HEAD["ray_head_aux_ports"]["client_server"],
              "a Ray worker port": RAY_HEAD["ray_head_worker_ports"]["start"]}
    for what, port in closed.items():
        assert not connects(bob, ip, port), f"{what} ({port}) must be closed to the network"
    rules = alice.check_output(TABLE)
    assert node_ip(bob) in rules and node_ip(carol) not in rules, rules
    assert 'counter packets 0 bytes 0 drop comment "not a party' not in rules, rules


def test_a_new_party_is_provisioned_and_nobody_is_restarted(carol_joined, party_hosts, tmp_path):
    members = {p: party_hosts[p] for p in ("alice", "bob")}
    assert start_stamps(members) == carol_joined.before, "a party's services restarted when carol joined"
    expected = {pid: node_ip(h) for pid, h in party_hosts.items()}
    for pid, host in party_hosts.items():
        assert federation_file(host) == expected, pid
    assert node_ip(party_hosts["carol"]) in party_hosts["bob"].check_output(TABLE)
    # carol works with an existing party at once (through bob's updated firewall)
    jobs = carol_joined.jobs
    path = upload_psi_input(jobs, "bob", tmp_path)
    upload_psi_input(jobs, "carol", tmp_path)
    psi = jobs.run(psi_spec("bob", "carol", 4, path))
    assert psi.rc == 0, psi
    for pid in ("bob", "carol"):
        assert psi.results[pid]["result"]["intersection_count"] == 500, psi
    ping = jobs.run({"job_id": unique_job_id("ping"), "kind": "ping", "parties": list(PARTIES), "slot": 0})
    assert ping.rc == 0, ping

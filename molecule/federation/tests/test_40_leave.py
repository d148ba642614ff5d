"""carol leaves: uninstall.yml on her node (through the three-party
inventory), then site.yml for the others (molecule's inventory again), with
nobody restarted. Last: it ends the federation that carol_joined set up."""
from __future__ import annotations

import json

from conftest import PARTIES, SFNODE, node_ip, start_stamps, unique_job_id
from shared import CHANNEL_UNIT, FIREWALL, NODE, REDIS, UNITS

TABLE = f"nft list table inet {FIREWALL['firewall_table']}"


def test_a_party_is_removed_and_nobody_is_restarted(jobs, three_parties, party_hosts):
    members = {p: party_hosts[p] for p in ("alice", "bob")}
    carol = party_hosts["carol"]
    before = start_stamps(members)
    kept = f"{NODE['node_data_dir']}/data/kept/input.csv"
    carol.run(f"mkdir -p {kept.rsplit('/', 1)[0]} && touch {kept}")

    run = three_parties.playbook("uninstall.yml", "--limit", PARTIES["carol"])
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    run = jobs.playbook("site.yml")
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]

    assert start_stamps(members) == before, "a party's services restarted when carol left"
    for pid, host in members.items():
        doc = json.loads(host.file(f"{NODE['node_config_dir']}/federation.json").content_string)
        assert sorted(p["id"] for p in doc["parties"]) == ["alice", "bob"], pid
        assert node_ip(carol) not in host.check_output(TABLE), pid
    # a job naming carol is refused by the remaining parties
    spec = {"job_id": unique_job_id("gone"), "kind": "ping", "parties": ["alice", "carol"], "slot": 0}
    alice = party_hosts["alice"]
    alice.run_expect([0], f"echo '{json.dumps(spec)}' > /tmp/{spec['job_id']}.json")
    out = alice.run(f"{SFNODE} submit /tmp/{spec['job_id']}.json")
    assert out.rc != 0 and "carol" in out.stdout + out.stderr, out.stdout + out.stderr

    # carol's node: services, software, configuration and user gone; data kept
    for unit in (*UNITS, CHANNEL_UNIT, FIREWALL["firewall_unit"]):
        assert not carol.file(f"/etc/systemd/system/{unit}").exists, unit
        assert carol.run(f"systemctl is-active {unit}").stdout.strip() != "active", unit
    for path in (NODE["node_install_dir"], NODE["node_config_dir"], SFNODE):
        assert not carol.file(path).exists, path
    assert not carol.user(NODE["node_user"]).exists
    assert carol.file(kept).exists
    assert carol.file(REDIS["redis_data_dir"]).is_directory
    assert carol.run(TABLE).rc != 0, "carol's firewall table must be gone"

"""carol leaves: uninstall.yml on her node, then site.yml for the others,
with nobody restarted."""
from __future__ import annotations

import json

from conftest import SFNODE, node_ip, start_stamps, unique_job_id


def test_a_party_is_removed_and_nobody_is_restarted(jobs, party_hosts):
    members = {p: party_hosts[p] for p in ("alice", "bob")}
    carol = party_hosts["carol"]
    before = start_stamps(members)
    carol.run("mkdir -p /var/lib/secretflow/data/kept && touch /var/lib/secretflow/data/kept/input.csv")

    run = jobs.playbook("uninstall.yml", "--limit", "sff-fed-carol")
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    jobs.carol_leaves()
    run = jobs.playbook("site.yml")
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]

    assert start_stamps(members) == before, "a party's services restarted when carol left"
    for pid, host in members.items():
        doc = json.loads(host.file("/etc/secretflow/federation.json").content_string)
        assert sorted(p["id"] for p in doc["parties"]) == ["alice", "bob"], pid
        assert node_ip(carol) not in host.check_output("nft list table inet secretflow"), pid
    # a job naming carol is refused by the remaining parties
    spec = {"job_id": unique_job_id("gone"), "kind": "ping", "parties": ["alice", "carol"], "slot": 0}
    alice = party_hosts["alice"]
    alice.run_expect([0], f"echo '{json.dumps(spec)}' > /tmp/{spec['job_id']}.json")
    out = alice.run(f"{SFNODE} submit /tmp/{spec['job_id']}.json")
    assert out.rc != 0 and "carol" in out.stdout + out.stderr, out.stdout + out.stderr

    # carol's node: services, software, configuration and user gone; data kept
    for unit in ("secretflow-worker", "secretflow-ray", "secretflow-redis", "secretflow-firewall"):
        assert not carol.file(f"/etc/systemd/system/{unit}.service").exists, unit
        assert carol.run(f"systemctl is-active {unit}").stdout.strip() != "active", unit
    for path in ("/opt/secretflow", "/etc/secretflow", "/usr/local/bin/sfnode"):
        assert not carol.file(path).exists, path
    assert not carol.user("secretflow").exists
    assert carol.file("/var/lib/secretflow/data/kept/input.csv").exists
    assert carol.file("/var/lib/secretflow-redis").is_directory
    assert carol.run("nft list table inet secretflow").rc != 0, "carol's firewall table must be gone"

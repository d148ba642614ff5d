"""Operating the three-party federation (three_parties): the status
playbook on a healthy federation, in JSON and under --check; site.yml --check
changing nothing; a rolling restart; a stopped Ray head named by status."""
from __future__ import annotations

import json
import re

from conftest import PARTIES, start_stamps, unique_job_id
from shared import NODE, UNITS, wait_for

REDIS, RAY, WORKER = UNITS
VERSIONS = ("python 3.10.", "secretflow 1.12.0b0", "ray 2.42.0", "click 8.2.1", "celery 5.6.")


def text(run) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", run.stdout + run.stderr)


def lines(run) -> list[str]:
    """Printed lines, without the callback's quoting (json or yaml result format)."""
    out = []
    for line in text(run).splitlines():
        line = re.sub(r'^\s*(- )?["\']?', "", line)
        out.append(re.sub(r'["\']?,?\s*$', "", line).replace("\\\\", "\\"))
    return out


def recap(run) -> dict[str, dict[str, int]]:
    found = {}
    for host, counts in re.findall(r"^(sff-fed-\w+)\s*:\s*(ok=.*)$", text(run), re.M):
        found[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
    return found


def matrix(run) -> dict[str, dict[str, str]]:
    rows = [line for line in lines(run) if " | " in line]
    header = [c.strip() for c in rows[0].split("|")]
    assert header[0] == "from \\ to", rows
    table = {}
    for row in rows[1:]:
        cells = [c.strip() for c in row.split("|")]
        table[cells[0]] = dict(zip(header[1:], cells[1:]))
    return table


def status_json(jobs, *args: str) -> tuple[object, dict]:
    run = jobs.playbook("status.yml", "-e", "status_json=true", *args,
                        env={"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"})
    doc = json.loads(run.stdout[run.stdout.index("{"):])
    for task in doc["plays"][0]["tasks"]:
        if task["task"]["name"] == "Federation status as JSON":
            for result in task["hosts"].values():
                if "msg" in result:
                    return run, result["msg"]
    raise AssertionError(f"no JSON document in the output:\n{run.stdout[-3000:]}")


def status_text(jobs, *args: str):
    """status.yml's text; result format json here, so no line of it is wrapped."""
    return jobs.playbook("status.yml", *args, env={"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"})


def test_status_of_a_healthy_federation(three_parties):
    run = status_text(three_parties)
    out = "\n".join(lines(run))
    assert run.returncode == 0, out[-6000:]
    for pid in PARTIES:
        assert re.search(rf"^== {pid} \([0-9.]+\): ok$", out, re.M), out[-6000:]
    # every party's units, in the order its report gives them
    units = [line for line in out.splitlines() if line.startswith("units:    ")]
    assert len(units) == 3, out
    assert all(f"{what} active" in line for line in units for what in ("Redis", "Ray head", "worker")), units
    for version in VERSIONS:
        assert out.count(version) == 3, (version, out)
    assert out.count("redis:    answers with the password") == 3, out
    assert out.count("AOF on") == 3, out
    assert out.count("ray head: GCS") == 3 and out.count("worker:   answers a ping in") == 3, out
    assert "NOT LISTENING" not in out and "problem:" not in out, out
    table = matrix(run)
    assert set(table) == set(PARTIES), table
    for source, row in table.items():
        for target, cell in row.items():
            assert cell == ("-" if source == target else "open"), (source, target, table)
    verdicts = [line for line in lines(run) if line.startswith("VERDICT:")]
    assert verdicts and verdicts[-1].startswith("VERDICT: HEALTHY: 3 parties"), out[-3000:]


def test_status_as_json(three_parties):
    run, doc = status_json(three_parties)
    assert run.returncode == 0, run.stdout[-3000:]
    assert doc["ok"] is True and doc["problems"] == [], doc["problems"]
    assert set(doc["parties"]) == set(PARTIES)
    for pid, party in doc["parties"].items():
        assert party["ok"] is True, (pid, party["problems"])
        assert all(party["units"][u]["active"] == "active" for u in UNITS), party["units"]
        assert party["units"][RAY]["uptime_seconds"] >= 0
        assert party["versions"]["secretflow"] == "1.12.0b0" and party["versions"]["click"] == "8.2.1"
        assert party["redis"]["answers"] and party["redis"]["aof_enabled"], party["redis"]
        assert 0 < party["redis"]["used_memory"] < party["redis"]["maxmemory"], party["redis"]
        assert party["ray"]["resources"]["CPU"] > 0 and party["ray"]["resources"]["object_store_memory"] > 0
        assert party["celery"]["answers"] and party["celery"]["round_trip_ms"] < 10000, party["celery"]
        assert all(party["sockets"]["listens"].values()), party["sockets"]
        assert {peer for peer, row in party["reachability"].items() if row["open"]} == set(PARTIES) - {pid}
    assert doc["verdict"].startswith("VERDICT: HEALTHY")


def test_status_under_check_mode_changes_nothing(three_parties):
    run = three_parties.playbook("status.yml", "--check")
    assert run.returncode == 0, text(run)[-4000:]
    counts = recap(run)
    assert set(counts) == set(PARTIES.values()), counts
    assert all(c["changed"] == 0 and c["failed"] == 0 for c in counts.values()), counts


def test_site_check_mode_on_the_provisioned_federation_reports_no_changes(three_parties, party_hosts):
    before = start_stamps(party_hosts)
    run = three_parties.playbook("site.yml", "--check", "--diff")
    assert run.returncode == 0, text(run)[-5000:]
    counts = recap(run)
    assert set(counts) == set(PARTIES.values()), counts
    changed = {host: c for host, c in counts.items() if c["changed"] or c["failed"] or c["unreachable"]}
    assert not changed, (changed, text(run)[-6000:])
    assert start_stamps(party_hosts) == before, "a unit restarted during site.yml --check"


def test_rolling_restart_one_party_at_a_time(three_parties, party_hosts):
    before = start_stamps(party_hosts)
    run = three_parties.playbook("restart.yml")
    assert run.returncode == 0, text(run)[-5000:]
    after = {pid: {u: int(v) for u, v in stamps.items()} for pid, stamps in start_stamps(party_hosts).items()}
    for pid in PARTIES:
        for unit in UNITS:
            assert after[pid][unit] != int(before[pid][unit]), f"{pid}: {unit} was not restarted"
        assert after[pid][REDIS] < after[pid][RAY] < after[pid][WORKER], (pid, after[pid])
    order = sorted(PARTIES, key=lambda pid: after[pid][REDIS])
    for first, then in zip(order, order[1:]):
        assert max(after[first].values()) < min(after[then].values()), \
            f"{then} restarted before {first} was done: {after}"
    ping = three_parties.run({"job_id": unique_job_id("after-restart"), "kind": "ping",
                              "parties": list(PARTIES), "slot": 0})
    assert ping.rc == 0, ping


def node_status_ok(host) -> bool:
    return host.run(f"runuser -u {NODE['node_user']} -- /usr/local/bin/sfnode status").rc == 0


def test_a_stopped_ray_head_is_named_by_status(three_parties, party_hosts):
    bob = party_hosts["bob"]
    bob.run_expect([0], f"systemctl stop {RAY}")
    try:
        run = status_text(three_parties)
    finally:
        bob.run_expect([0], f"systemctl start {RAY}")
    out = "\n".join(lines(run))
    assert run.returncode != 0, out[-4000:]
    verdict = [line for line in lines(run) if "VERDICT:" in line][-1]
    # stopped, the unit is inactive or (when the head exits non-zero on SIGTERM) failed
    assert "UNHEALTHY" in verdict and re.search(rf"bob: Ray head \({RAY}\) is (inactive|failed)", verdict), verdict
    assert re.search(r"^== bob \(.*\): UNHEALTHY$", out, re.M) and re.search(r"^== alice \(.*\): ok$", out, re.M)
    assert "alice:" not in verdict and "carol:" not in verdict, verdict
    wait_for(lambda: node_status_ok(bob), 120, lambda: bob.run("/usr/local/bin/sfnode status").stdout, step=3)
    run = three_parties.playbook("status.yml")
    assert run.returncode == 0, "\n".join(lines(run))[-4000:]

"""Jobs between parties that decide for themselves: the job channel.

alice proposes on her own node (``sfnode propose``, or playbooks/propose.yml
limited to her host); bob's node decides by bob's policy, which molecule.yml
gives bob: alice may propose PSI and ping jobs reading bob's ``shared/*``,
spu_sum jobs wait for a person on bob, and carol has no rule at all. The
tests run in this order and the last one reads both journals for the jobs
of the others, in that order.

Inputs are written straight into the data directories (upload.yml is tested
elsewhere): alice and bob have ``shared/ids.csv`` (alice 1..3000, bob
2001..5000: 1000 in common), bob has ``private/x.csv``, a ``shared/locked.csv``
that his worker can read but his Ray head cannot (an input a job cannot
read), and both have ``shared/big.csv``, large enough for a PSI of more than
30 s here.
"""
from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PARTIES, SFNODE, node_ip, unique_job_id
from shared import CHANNEL, JOBS_DIR, NODE, _door, actor_processes, job_phase, job_process_alive, wait_for
from test_25_tls import stranger_files

PORT = CHANNEL["job_channel_port"]
DATA = f"{NODE['node_data_dir']}/data"
USER = NODE["node_user"]
PROBE = "/root/channel_probe.py"
BIG_ROWS = 8_000_000  # each side, half of them shared: a PSI of more than 30 s here
# (test, job id) in the order the tests ran: what the journals must show
RAN: list[tuple[str, str]] = []


def write_csv(host, path: str, low: int, high: int, mode: str = "0640") -> None:
    """A CSV of ids low..high in the party's data directory, written as the worker's user."""
    code = (f"import os; os.makedirs(os.path.dirname('{DATA}/{path}'), exist_ok=True); "
            f"f = open('{DATA}/{path}', 'w'); f.write('uid\\n'); "
            f"f.writelines('id-%09d\\n' % i for i in range({low}, {high} + 1)); f.close(); "
            f"os.chmod('{DATA}/{path}', 0o{mode})")
    host.run_expect([0], f"runuser -u {USER} -- python3 -c \"{code}\"")


@pytest.fixture(scope="module")
def inputs(three_parties, party_hosts):
    alice, bob, carol = (party_hosts[p] for p in ("alice", "bob", "carol"))
    write_csv(alice, "shared/ids.csv", 1, 3000)
    write_csv(bob, "shared/ids.csv", 2001, 5000)
    write_csv(carol, "shared/ids.csv", 1, 100)
    write_csv(bob, "private/x.csv", 1, 10)
    # the worker's user owns it, the Ray head's group may not read it
    write_csv(bob, "shared/locked.csv", 2001, 5000, mode="0600")
    write_csv(alice, "shared/big.csv", 1, BIG_ROWS)
    write_csv(bob, "shared/big.csv", BIG_ROWS // 2 + 1, BIG_ROWS + BIG_ROWS // 2)
    return party_hosts


def put(host, spec: dict) -> str:
    path = f"/tmp/{spec['job_id']}.json"
    data = base64.b64encode(json.dumps(spec).encode()).decode()
    host.run_expect([0], f"echo {data} | base64 -d > {path} && chmod 0644 {path}")
    return path


AS_WORKER = ["runuser", "-u", USER, "--", SFNODE]


def sfnode(host, command: str):
    """``sfnode COMMAND`` on a node, as the worker's user (who owns the job directory)."""
    return host.run(f"runuser -u {USER} -- {SFNODE} {command}")


def outcome(run) -> dict:
    assert run.stdout.strip().startswith("{"), (run.rc, run.stdout[-2000:], run.stderr[-2000:])
    return json.loads(run.stdout)


def start_propose(host, pid: str, spec: dict) -> subprocess.Popen:
    """``sfnode propose`` on pid's node, in the background."""
    path = put(host, spec)
    door = _door()
    container_pid, _ = door.container_pid(PARTIES[pid])
    return subprocess.Popen(door.nsenter_command(container_pid, [*AS_WORKER, "propose", path]),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 600) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert out.strip().startswith("{"), (proc.returncode, out[-2000:], err[-2000:])
    return {"rc": proc.returncode, **json.loads(out)}


def propose(host, spec: dict) -> tuple[dict, float]:
    """``sfnode propose`` on a node: its outcome (with rc) and how long it took."""
    started = time.monotonic()
    run = sfnode(host, f"propose {put(host, spec)}")
    return {"rc": run.rc, **outcome(run)}, time.monotonic() - started


def result(host, job_id: str) -> dict:
    run = host.run(f"cat {JOBS_DIR}/{job_id}/result.json")
    return json.loads(run.stdout) if run.rc == 0 else {}


def final_result(host, job_id: str) -> dict:
    """A node's result of a job once it is final, else nothing."""
    answer = result(host, job_id)
    return answer if answer.get("final") else {}


def psi(job_id: str, slot: int, bob_path: str = "shared/ids.csv", alice_path: str = "shared/ids.csv",
        a: str = "alice", b: str = "bob") -> dict:
    return {"job_id": job_id, "kind": "psi", "parties": [a, b], "slot": slot,
            "params": {"inputs": {a: {"path": alice_path, "keys": ["uid"]}, b: {"path": bob_path, "keys": ["uid"]}},
                       "receiver": a, "broadcast_result": True}}


def journal(host, job_id: str | None = None) -> list[dict]:
    """A node's journal (sfnode audit), of one job if given."""
    run = sfnode(host, "audit" + (f" --job {job_id}" if job_id else ""))
    assert run.rc == 0, run.stderr
    return [json.loads(line) for line in run.stdout.splitlines()]


def proposal(host, job_id: str) -> dict:
    run = host.run(f"cat {JOBS_DIR}/.proposals/{job_id}.json")
    return json.loads(run.stdout) if run.rc == 0 else {}


def test_alice_proposes_a_psi_that_bobs_policy_grants_and_both_results_are_right(three_parties, inputs, tmp_path):
    job_id = unique_job_id("ch-psi")
    spec = tmp_path / "psi.json"
    spec.write_text(json.dumps(psi(job_id, 10)))
    # the playbook, run against the federation's inventory, limited to the initiator
    run = three_parties.playbook("propose.yml", "-l", PARTIES["alice"], "-e", f"job_spec={spec}")
    RAN.append(("psi", job_id))
    assert run.returncode == 0, run.stdout[-5000:]
    assert "peers.alice.kinds.psi" in run.stdout, run.stdout[-3000:]  # bob's rule that accepted it
    for pid in ("alice", "bob"):
        answer = result(inputs[pid], job_id)
        assert answer.get("ok") is True, (pid, answer)
        assert answer["result"]["original_count"] == 3000, (pid, answer)
        assert answer["result"]["intersection_count"] == 1000, (pid, answer)
    # one view of the job from either party: every party's state
    view = outcome(sfnode(inputs["bob"], f"job {job_id}"))
    assert {pid: view["parties"][pid]["state"] for pid in ("alice", "bob")} == {"alice": "done", "bob": "done"}, view
    assert view["parties"]["bob"]["decision"]["rule"] == "peers.alice.kinds.psi", view


def test_a_psi_on_bobs_private_file_is_refused_by_bob_and_nothing_starts(inputs):
    job_id = unique_job_id("ch-private")
    answer, took = propose(inputs["alice"], psi(job_id, 11, bob_path="private/x.csv"))
    RAN.append(("private", job_id))
    assert answer["rc"] != 0 and answer["ok"] is False, answer
    assert took < 5, (took, answer)
    decision = answer["decisions"]["bob"]
    assert decision["outcome"] == "refused" and decision["rule"] == "peers.alice.datasets", answer
    assert "private/x.csv" in decision["reason"], answer
    assert "party bob refused (peers.alice.datasets)" in answer["error"] and "private/x.csv" in answer["error"], answer
    # no runner started on either party: neither has a work dir of the job
    for pid in ("alice", "bob"):
        assert inputs[pid].run(f"test -e {JOBS_DIR}/{job_id}").rc != 0, pid


def test_carol_who_has_no_rule_on_bob_is_refused_and_bob_journals_it(inputs):
    job_id = unique_job_id("ch-carol")
    answer, _ = propose(inputs["carol"], psi(job_id, 12, a="carol", b="bob", alice_path="shared/ids.csv"))
    RAN.append(("carol", job_id))
    assert answer["rc"] != 0, answer
    assert answer["decisions"]["bob"]["outcome"] == "refused" and answer["decisions"]["bob"]["rule"] == "peers", answer
    entries = journal(inputs["bob"], job_id)
    events = [(e["event"], e.get("peer"), e.get("outcome")) for e in entries]
    assert events[:2] == [("proposal_received", "carol", None), ("decision", "carol", "refused")], entries
    assert inputs["bob"].run(f"test -e {JOBS_DIR}/{job_id}").rc != 0


def test_a_manual_proposal_waits_approving_runs_it_and_refusing_reaches_alice_at_once(three_parties, inputs):
    alice, bob = inputs["alice"], inputs["bob"]
    approved = unique_job_id("ch-manual")
    spec = {"job_id": approved, "kind": "spu_sum", "parties": ["alice", "bob"], "slot": 13,
            "params": {"values": {"alice": 20, "bob": 22}}}
    proc = start_propose(alice, "alice", spec)
    RAN.append(("approved", approved))
    wait_for(lambda: proposal(bob, approved).get("outcome") == "waiting", 30, "bob's proposal to wait", step=0.5)
    time.sleep(2)
    assert proc.poll() is None  # alice waits for bob's person
    assert bob.run(f"test -e {JOBS_DIR}/{approved}").rc != 0  # nothing runs on bob meanwhile
    run = three_parties.playbook("decide.yml", "-l", PARTIES["bob"], "-e", f"job_id={approved}",
                                 "-e", "decision=approve")
    assert run.returncode == 0, run.stdout[-3000:]
    answer = finish(proc)
    assert answer["rc"] == 0, answer
    assert answer["results"]["alice"]["result"]["sum"] == 42, answer
    assert answer["decisions"]["bob"]["rule"] == "operator", answer

    refused = unique_job_id("ch-refused")
    proc = start_propose(alice, "alice", {**spec, "job_id": refused})
    RAN.append(("refused", refused))
    wait_for(lambda: proposal(bob, refused).get("outcome") == "waiting", 30, "bob's proposal to wait", step=0.5)
    started = time.monotonic()
    sfnode(bob, f"refuse {refused} --reason 'not this quarter'")
    answer = finish(proc, timeout=60)
    took = time.monotonic() - started
    # at once, not at the end of alice's wait (the job's deadline, 600 s): bob's CLI start
    # and alice's next look (every second) took 2-8 s on this two-core machine
    assert took < 60, (took, answer)
    assert answer["rc"] != 0 and answer["decisions"]["bob"]["outcome"] == "refused", answer
    assert "not this quarter" in answer["error"] and "party bob" in answer["error"], answer


def test_a_job_whose_slot_is_busy_on_bob_fails_on_alice_within_15_s_naming_bob(inputs):
    alice, bob = inputs["alice"], inputs["bob"]
    # bob's slot 14 is held by a job with carol, who never hears of it
    blocker = unique_job_id("ch-blocker")
    path = put(bob, {"job_id": blocker, "kind": "ping", "parties": ["bob", "carol"], "slot": 14,
                     "deadline_seconds": 300})
    door = _door()
    holder = subprocess.Popen(door.nsenter_command(door.container_pid(PARTIES["bob"])[0],
                                                   [SFNODE, "submit", path, "--timeout", "290"]),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: job_process_alive(bob, blocker), 60, "bob's blocking job to run", step=0.5)
        job_id = unique_job_id("ch-busy")
        answer, took = propose(alice, psi(job_id, 14))
        RAN.append(("busy", job_id))
        assert answer["rc"] != 0, answer
        mine = answer["results"]["alice"]
        assert "party bob" in mine["error"], answer
        assert took < 15 + 10, (took, answer)  # bob's answer, then alice's side ends within 15 s
        ended = [e for e in journal(bob, job_id) if e["event"] == "ended"]
        assert ended and "busy" in ended[0].get("error", ""), journal(bob, job_id)
    finally:
        sfnode(bob, f"cancel {blocker} --reason 'end of the test'")
        holder.communicate(timeout=60)

    # a job that fails inside on bob (an input his Ray head cannot read) ends alice's side
    job_id = unique_job_id("ch-unreadable")
    answer, took = propose(alice, psi(job_id, 14, bob_path="shared/locked.csv"))
    RAN.append(("unreadable", job_id))
    assert answer["rc"] != 0, answer
    assert "party bob" in answer["results"]["alice"]["error"], answer
    # bob's side records its own failure; alice may hear of it (from rayfed) a moment earlier
    theirs = wait_for(lambda: final_result(bob, job_id), 30,
                      lambda: f"bob's final result of {job_id}: {result(bob, job_id)}; alice's answer "
                              f"{answer}; bob's journal {journal(bob, job_id)}; bob's view "
                              f"{sfnode(bob, f'job {job_id}').stdout}", step=0.5)
    assert theirs.get("ok") is False and not theirs.get("cancelled_by"), theirs


def test_a_running_psi_cancelled_by_bob_ends_on_both_and_the_slot_takes_the_next_job(inputs):
    alice, bob = inputs["alice"], inputs["bob"]
    job_id = unique_job_id("ch-cancel")
    proc = start_propose(alice, "alice", psi(job_id, 15, bob_path="shared/big.csv", alice_path="shared/big.csv"))
    RAN.append(("cancelled", job_id))

    wait_for(lambda: job_phase(alice, job_id) == "run" and job_phase(bob, job_id) == "run", 120,
             lambda: f"both sides to run the PSI (bob's decision: {proposal(bob, job_id)})", step=0.5)
    time.sleep(3)  # well inside the PSI
    assert not result(alice, job_id).get("final") and not result(bob, job_id).get("final")
    started = time.monotonic()
    run = sfnode(bob, f"cancel {job_id} --reason 'wrong file'")
    assert run.rc == 0, (run.stdout, run.stderr)
    wait_for(lambda: not job_process_alive(alice, job_id) and not job_process_alive(bob, job_id), 15,
             "both runners to end")
    wait_for(lambda: not actor_processes(alice) and not actor_processes(bob), 15,
             lambda: f"Ray actors left: alice {actor_processes(alice)}, bob {actor_processes(bob)}")
    ended = time.monotonic() - started
    answer = finish(proc, timeout=60)
    assert answer["rc"] != 0, answer
    assert "wrong file" in answer["results"]["alice"]["error"] and "bob" in answer["results"]["alice"]["error"], answer
    assert ended < 15, ended
    for pid in ("alice", "bob"):  # each supervisor records the cancellation once its runner ended
        final = wait_for(lambda pid=pid: final_result(inputs[pid], job_id), 15,
                         lambda pid=pid: f"{pid}'s final result of {job_id}: {result(inputs[pid], job_id)}")
        assert final.get("ok") is False, (pid, final)

    # the slot takes a new job at once
    after = unique_job_id("ch-after")
    answer, _ = propose(alice, {"job_id": after, "kind": "ping", "parties": ["alice", "bob"], "slot": 15})
    RAN.append(("after", after))
    assert answer["rc"] == 0, answer


def test_a_job_of_one_administrator_is_cancelled_everywhere_too(three_parties, inputs):
    """playbooks/job.yml (no proposal, no policy): sfnode cancel on alice ends bob's side as well."""
    alice, bob = inputs["alice"], inputs["bob"]
    job_id = unique_job_id("ch-admin")
    proc = three_parties.start(psi(job_id, 16, bob_path="shared/big.csv", alice_path="shared/big.csv"))
    wait_for(lambda: job_phase(alice, job_id) == "run" and job_phase(bob, job_id) == "run", 180,
             "both sides to run the PSI", step=0.5)
    run = sfnode(alice, f"cancel {job_id} --reason 'stop it'")
    assert run.rc == 0 and outcome(run)["told"] == {"bob": True}, (run.stdout, run.stderr)
    wait_for(lambda: not job_process_alive(alice, job_id) and not job_process_alive(bob, job_id), 15,
             "both runners to end")
    done = three_parties.finish(proc, timeout=120)
    assert done.rc != 0, done
    assert "ended by party alice: stop it" in done.results["bob"]["error"], done


def test_bad_calls_on_the_channel_are_refused_and_the_node_keeps_serving(inputs, tmp_path):
    alice, bob, carol = inputs["alice"], inputs["bob"], inputs["carol"]
    bob_ip = node_ip(bob)
    here = Path(__file__).parent
    for pid in ("alice", "carol"):
        subprocess.run(["podman", "cp", str(here / "channel_probe.py"), f"{PARTIES[pid]}:{PROBE}"], check=True)
        subprocess.run(["podman", "cp", str(here / "tls_probe.py"), f"{PARTIES[pid]}:/root/tls_probe.py"], check=True)
    tls_dir = f"{NODE['node_config_dir']}/tls"

    def call(what: str) -> dict:
        return json.loads(alice.check_output(
            f"python3 {PROBE} {bob_ip} {PORT} {tls_dir}/node.crt {tls_dir}/node.key {what}"))

    for what, status, words in (("malformed", 400, "not JSON"), ("big", 413, "larger than"),
                                ("unknown", 400, "unknown field(s) run_as")):
        answer = call(what)
        assert answer.get("status") == status and words in answer["answer"]["error"], (what, answer)
    # no client certificate; a certificate of no party (made here, for carol's address)
    bare = json.loads(alice.check_output(f"python3 /root/tls_probe.py tls {bob_ip} {PORT}"))
    assert not bare["accepted"], bare
    for made in stranger_files(tmp_path, node_ip(carol)):
        subprocess.run(["podman", "cp", str(made), f"{PARTIES['carol']}:/root/{made.name}"], check=True)
    stranger = json.loads(carol.check_output(
        f"python3 /root/tls_probe.py tls {bob_ip} {PORT} /root/stranger.crt /root/stranger.key"))
    assert not stranger["accepted"], stranger
    # and bob's channel still answers a party
    answer = call("get:no-such-job")
    assert answer.get("status") == 404, answer
    refused = [e for e in journal(bob) if e["event"] == "refused_call" and e.get("peer") == "alice"]
    assert len(refused) >= 3, refused


def test_each_journal_lists_the_jobs_events_in_order(inputs):
    """What each party recorded of the jobs above, in the order they ran: per job, the events
    each party must have in this order (bob's, then alice's)."""
    expected = {
        "psi": (["proposal_received", "decision", "start_received", "started", "ended"],
                ["proposal_sent", "start_sent", "started", "ended"]),
        "private": (["proposal_received", "decision"], ["proposal_sent", "cancel_sent"]),
        "approved": (["proposal_received", "decision", "approved", "start_received", "started", "ended"],
                     ["proposal_sent", "start_sent", "started", "ended"]),
        "refused": (["proposal_received", "decision", "refused"], ["proposal_sent", "cancel_sent"]),
        # bob's side fails, then bob tells alice, whose side ends
        "busy": (["proposal_received", "decision", "start_received", "started", "ended", "cancel_sent"],
                 ["proposal_sent", "start_sent", "cancel_received", "ended"]),
        # alice's side ends by bob's word, or by bob's error that rayfed brings first
        "unreadable": (["proposal_received", "decision", "start_received", "started", "ended", "cancel_sent"],
                       ["proposal_sent", "start_sent", "ended"]),
        "cancelled": (["proposal_received", "decision", "start_received", "started", "cancel_sent"],
                      ["proposal_sent", "start_sent", "started", "cancel_received", "ended"]),
    }
    journals = {pid: journal(inputs[pid]) for pid in ("alice", "bob")}
    for pid, entries in journals.items():
        times = [e["ts"] for e in entries]
        assert times == sorted(times), pid
        # the jobs appear in the order the tests ran them
        firsts = [next(i for i, e in enumerate(entries) if e.get("job_id") == job_id)
                  for _name, job_id in RAN if any(e.get("job_id") == job_id for e in entries)]
        assert firsts == sorted(firsts), (pid, RAN)
        # no data row: the inputs' ids never reach a journal
        assert not any("id-0" in json.dumps(e) for e in entries), pid
    assert {name for name, _ in RAN} >= set(expected), RAN  # every test above ran
    for name, job_id in RAN:
        for pid, wanted in zip(("bob", "alice"), expected.get(name, ((), ()))):
            events = [e["event"] for e in journals[pid] if e.get("job_id") == job_id]
            positions, at = [], 0
            for event in wanted:  # wanted is a subsequence of events
                at = events.index(event, at) if event in events[at:] else -1
                if at < 0:
                    break
                positions.append(at)
                at += 1
            assert len(positions) == len(wanted), (name, pid, wanted, events)

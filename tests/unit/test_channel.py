"""The job channel over real mutual TLS on this machine: who may call, what they get."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from conftest import FEDERATION, env_for, make_certificate
from sfnode.channel import ChannelNode, make_app, server_context
from sfnode.jobdir import cancel_path
from sfnode.config import NodeConfig
from sfnode.federation import parse_federation
from sfnode.journal import Journal
from sfnode.policy import parse_policy

LOCAL = "127.0.0.1"  # every node's certificate names it here: the tests dial it


@pytest.fixture(scope="module")
def certs() -> dict[str, tuple[str, str]]:
    """A node certificate (CA:FALSE) per party, and one of nobody's."""
    return {name: make_certificate(name, LOCAL, ca=False)
            for name in ("alice", "bob", "carol", "mallory")}




class Bob:
    """Node bob: its env, federation, policy, journal, and the jobs it queued."""

    def __init__(self, tmp_path: Path, certs: dict[str, tuple[str, str]]) -> None:
        data = json.loads(json.dumps(FEDERATION))
        for entry in data["parties"]:
            entry["certificate"] = certs[entry["id"]][0]
            if entry["id"] == "bob":
                entry["ip"] = LOCAL  # where the tests reach bob
        (tmp_path / "federation.json").write_text(json.dumps(data))
        (tmp_path / "data" / "shared").mkdir(parents=True)
        (tmp_path / "data" / "private").mkdir()
        (tmp_path / "data" / "shared" / "ids.csv").write_text("id\n1\n2\n")
        (tmp_path / "data" / "private" / "x.csv").write_text("id\n1\n")
        (tmp_path / "jobs").mkdir()
        tls = tmp_path / "tls"
        tls.mkdir()
        (tls / "node.crt").write_text(certs["bob"][0])
        (tls / "node.key").write_text(certs["bob"][1])
        self.config = NodeConfig.from_mapping(env_for(
            tmp_path, NODE_ID="bob", NODE_IP=LOCAL, TLS_CERT=str(tls / "node.crt"),
            TLS_KEY=str(tls / "node.key")))
        self.queued: list[dict[str, Any]] = []
        policy = parse_policy({"version": 1, "peers": {"alice": {
            "kinds": {"psi": "accept", "spu_sum": "manual"}, "datasets": ["shared/*"],
            "reveal_to": ["alice"]}}}, "bob")
        self.node = ChannelNode(self.config, parse_federation(data), policy,
                                Journal(tmp_path / "journal.jsonl", "bob"), self.queued.append)
        self.certs = certs
        self.tmp_path = tmp_path
        for who, (cert, key) in certs.items():  # each client's files, written once
            (tmp_path / f"{who}.crt").write_text(cert)
            (tmp_path / f"{who}.key").write_text(key)

    def client_context(self, who: str | None) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cadata=self.certs["bob"][0])
        if who is not None:
            context.load_cert_chain(self.tmp_path / f"{who}.crt", self.tmp_path / f"{who}.key")
        return context

    def journal(self) -> list[dict[str, Any]]:
        return list(self.node.journal.entries())


@contextmanager
def serving(bob: Bob) -> Iterator[int]:
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(make_app(bob.node))
    loop.run_until_complete(runner.setup())
    listener = socket.socket()
    listener.bind((LOCAL, 0))
    site = web.SockSite(runner, listener, ssl_context=server_context(bob.config, bob.node.federation))
    loop.run_until_complete(site.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.run_until_complete(runner.cleanup())
        loop.close()


def call(bob: Bob, port: int, who: str | None, method: str, path: str,
         body: Any = None, raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
    connection = http.client.HTTPSConnection(LOCAL, port, context=bob.client_context(who),
                                             timeout=10)
    payload = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    connection.request(method, path, body=payload, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    answer = json.loads(response.read() or b"{}")
    connection.close()
    return response.status, answer


def psi_spec(job_id: str, bob_path: str = "shared/ids.csv") -> dict[str, Any]:
    return {"job_id": job_id, "kind": "psi", "slot": 0, "deadline_seconds": 600,
            "parties": [{"id": "alice", "ip": "10.89.0.2", "rayfed_port": 20000, "spu_port": 21000},
                        {"id": "bob", "ip": LOCAL, "rayfed_port": 20000, "spu_port": 21000}],
            "params": {"inputs": {"alice": {"path": "a.csv", "keys": ["id"]},
                                  "bob": {"path": bob_path, "keys": ["id"]}},
                       "receiver": "alice", "protocol": "PROTOCOL_RR22", "broadcast_result": True}}


@pytest.fixture
def bob(tmp_path: Path, certs: dict[str, tuple[str, str]]) -> Bob:
    return Bob(tmp_path, certs)


def test_alice_proposes_a_psi_on_bobs_shared_file_and_starts_it_once_accepted(bob: Bob) -> None:
    with serving(bob) as port:
        status, answer = call(bob, port, "alice", "POST", "/v1/proposals", {"spec": psi_spec("j1")})
        assert status == 200, answer
        assert answer == {"party": "bob", "job_id": "j1", "outcome": "accepted",
                          "rule": "peers.alice.kinds.psi",
                          "reason": "party bob accepts jobs of kind psi from alice"}
        assert bob.queued == []  # nothing runs before alice has every party's consent
        status, state = call(bob, port, "alice", "GET", "/v1/jobs/j1")
        assert status == 200 and state["state"] == "accepted", state
        # carol is no party of it: the job does not exist for her
        assert call(bob, port, "carol", "POST", "/v1/jobs/j1/start", {})[0] == 404
        for _ in range(2):  # a repeated start queues it once
            status, started = call(bob, port, "alice", "POST", "/v1/jobs/j1/start", {})
            assert status == 200 and started["started"] is True, started
        assert [spec["job_id"] for spec in bob.queued] == ["j1"]
        assert call(bob, port, "alice", "GET", "/v1/jobs/j1")[1]["state"] == "queued"
    events = [(e["event"], e.get("outcome")) for e in bob.journal()]
    assert events == [("proposal_received", None), ("decision", "accepted"), ("refused_call", None),
                      ("start_received", None)]
    assert "shared/ids.csv" not in json.dumps(bob.journal())  # the spec's digest only


def test_only_an_accepted_job_that_nobody_ended_starts(bob: Bob) -> None:
    bob.node.policy = parse_policy({"version": 1, "peers": {"alice": {
        "kinds": {"psi": "manual"}, "datasets": ["shared/*"], "reveal_to": ["alice"],
        "max_concurrent_jobs": 3}}}, "bob")
    with serving(bob) as port:
        assert call(bob, port, "alice", "POST", "/v1/proposals",
                    {"spec": psi_spec("w1")})[1]["outcome"] == "waiting"
        status, answer = call(bob, port, "alice", "POST", "/v1/jobs/w1/start", {})
        assert status == 409 and "waiting" in answer["error"], answer
        assert call(bob, port, "alice", "POST", "/v1/jobs/nope/start", {})[0] == 404
        # approved by a person, then ended by alice before she started it
        record = bob.config.job_dir / ".proposals" / "w1.json"
        record.write_text(json.dumps({**json.loads(record.read_text()), "outcome": "accepted"}))
        call(bob, port, "alice", "POST", "/v1/jobs/w1/cancel", {"reason": "carol refused"})
        status, answer = call(bob, port, "alice", "POST", "/v1/jobs/w1/start", {})
        assert status == 409 and "ended" in answer["error"], answer
        status, answer = call(bob, port, "alice", "POST", "/v1/jobs/w1/start", {"now": True})
        assert status == 400, answer
    assert bob.queued == []


def test_a_private_file_is_refused_naming_bob_the_rule_and_the_path(bob: Bob) -> None:
    with serving(bob) as port:
        status, answer = call(bob, port, "alice", "POST", "/v1/proposals",
                              {"spec": psi_spec("j2", "private/x.csv")})
    assert status == 200 and answer["outcome"] == "refused", answer
    assert answer["party"] == "bob" and answer["rule"] == "peers.alice.datasets"
    assert "private/x.csv" in answer["reason"]
    assert bob.queued == []


def carols_psi(job_id: str, bob_path: str, bob_key: str) -> dict[str, Any]:
    """A PSI carol proposes to bob (carol has no rule in bob's policy)."""
    spec = psi_spec(job_id, bob_path)
    spec["parties"][0] = {"id": "carol", "ip": "10.89.0.4", "rayfed_port": 30000, "spu_port": 31000}
    spec["params"]["inputs"] = {"carol": {"path": "c.csv", "keys": ["id"]},
                                "bob": {"path": bob_path, "keys": [bob_key]}}
    spec["params"]["receiver"] = "carol"
    return spec


def test_carol_is_not_in_bobs_policy(bob: Bob) -> None:
    spec = carols_psi("j3", "shared/ids.csv", "id")
    with serving(bob) as port:
        status, answer = call(bob, port, "carol", "POST", "/v1/proposals", {"spec": spec})
    assert answer["outcome"] == "refused" and answer["rule"] == "peers", answer
    assert [(e["event"], e.get("peer"), e.get("rule")) for e in bob.journal()][-1] == (
        "decision", "carol", "peers")


def test_a_job_of_others_does_not_exist_for_a_caller(bob: Bob) -> None:
    with serving(bob) as port:
        call(bob, port, "alice", "POST", "/v1/proposals", {"spec": psi_spec("j4")})
        status, answer = call(bob, port, "carol", "GET", "/v1/jobs/j4")
        assert status == 404 and "no job j4 of party carol" in answer["error"]
        status, answer = call(bob, port, "carol", "POST", "/v1/jobs/j4/cancel", {"reason": "x"})
        assert status == 404
        status, answer = call(bob, port, "alice", "POST", "/v1/jobs/j4/cancel",
                              {"reason": "alice's input is gone"})
        assert status == 200 and answer["cancelled"] is True
    marker = json.loads(cancel_path(bob.config.job_dir, "j4", "alice").read_text())
    assert marker == {"job_id": "j4", "by": "alice", "reason": "alice's input is gone"}


@pytest.mark.parametrize("raw, error", [
    (b"{not json", "the body is not JSON"),
    (b"[1, 2]", "the body is not a JSON object"),
    (json.dumps({"spec": {}, "colour": "red"}).encode(), "unknown field(s) colour"),
    (json.dumps({"spec": {}, "x": "y" * (1024 * 1024)}).encode(), "larger than 1048576 bytes"),
])
def test_a_bad_body_gets_its_refusal_and_the_node_keeps_serving(bob: Bob, raw: bytes,
                                                                error: str) -> None:
    with serving(bob) as port:
        status, answer = call(bob, port, "alice", "POST", "/v1/proposals", raw=raw)
        assert status in (400, 413) and error in answer["error"], answer
        status, answer = call(bob, port, "alice", "POST", "/v1/proposals", {"spec": psi_spec("j5")})
        assert status == 200 and answer["outcome"] == "accepted"
    assert bob.journal()[0]["event"] == "refused_call"


def test_no_client_certificate_is_refused_in_the_handshake(bob: Bob) -> None:
    with serving(bob) as port:
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
            call(bob, port, None, "GET", "/v1/jobs/j1")
        assert call(bob, port, "alice", "GET", "/v1/jobs/j1")[0] == 404  # still serving


def test_a_certificate_of_no_party_is_refused_in_the_handshake(bob: Bob) -> None:
    with serving(bob) as port:
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
            call(bob, port, "mallory", "GET", "/v1/jobs/j1")
        assert call(bob, port, "alice", "GET", "/v1/jobs/j1")[0] == 404


def test_a_node_without_peers_serves_and_takes_no_caller(bob: Bob) -> None:
    """An organisation's first site.yml, before any card arrived: the channel starts, and
    no certificate gets through."""
    bob.node.federation = parse_federation({"version": 1, "parties": [
        p for p in json.loads((bob.tmp_path / "federation.json").read_text())["parties"]
        if p["id"] == "bob"]})
    with serving(bob) as port:
        for who in ("alice", "mallory"):
            with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
                call(bob, port, who, "GET", "/v1/jobs/j1")


def test_a_failing_party_tells_its_peers_to_end_the_job(bob: Bob, tmp_path: Path) -> None:
    from sfnode.channel import tell_peers_to_end

    alice_dir = tmp_path / "alice"
    alice_dir.mkdir()
    cert_file, key_file = alice_dir / "node.crt", alice_dir / "node.key"
    cert_file.write_text(bob.certs["alice"][0])
    key_file.write_text(bob.certs["alice"][1])
    alice = NodeConfig.from_mapping(env_for(alice_dir, TLS_CERT=str(cert_file),
                                            TLS_KEY=str(key_file)))
    closed = socket.socket()
    closed.bind((LOCAL, 0))  # bound, never listening: carol's channel is down
    with serving(bob) as port:
        call(bob, port, "alice", "POST", "/v1/proposals", {"spec": psi_spec("j6")})
        data = json.loads(json.dumps(FEDERATION))
        for entry in data["parties"]:
            entry.update(certificate=bob.certs[entry["id"]][0], ip=LOCAL)
        data["parties"][1]["channel_port"] = port
        data["parties"][2]["channel_port"] = closed.getsockname()[1]
        journal = Journal(alice_dir / "journal.jsonl", "alice")
        answers = tell_peers_to_end(alice, parse_federation(data), "j6", ["alice", "bob", "carol"],
                                    "party alice: its input is unreadable", journal)
    closed.close()
    assert answers["bob"]["ok"] is True and answers["bob"]["cancelled"] is True, answers
    assert answers["carol"]["ok"] is False and answers["carol"]["error"]
    assert set(answers) == {"bob", "carol"}
    marker = json.loads(cancel_path(bob.config.job_dir, "j6", "alice").read_text())
    assert marker["by"] == "alice" and marker["reason"] == "party alice: its input is unreadable"
    sent = [(e["peer"], e["outcome"]) for e in journal.entries()]
    assert sorted(sent) == [("bob", "told"), ("carol", "not told")]


class Alice:
    """Node alice's files: her env file, and a federation file that reaches bob's channel
    on this machine."""

    def __init__(self, tmp_path: Path, bob: Bob, port: int) -> None:
        home = tmp_path / "alice"
        (home / "data").mkdir(parents=True)
        (home / "jobs").mkdir()
        (home / "data" / "a.csv").write_text("id\n1\n3\n")
        (home / "node.crt").write_text(bob.certs["alice"][0])
        (home / "node.key").write_text(bob.certs["alice"][1])
        data = json.loads(json.dumps(FEDERATION))
        for entry in data["parties"]:
            entry["certificate"] = bob.certs[entry["id"]][0]
            if entry["id"] == "bob":
                entry.update(ip=LOCAL, channel_port=port)
        (home / "federation.json").write_text(json.dumps(data))
        env = env_for(home, TLS_CERT=str(home / "node.crt"), TLS_KEY=str(home / "node.key"))
        self.env_file = home / "node.env"
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        self.home = home

    def spec(self, job_id: str, bob_path: str = "shared/ids.csv") -> Path:
        spec = psi_spec(job_id, bob_path)
        spec["parties"] = ["alice", "bob"]  # short form: expanded from alice's federation file
        path = self.home / f"{job_id}.json"
        path.write_text(json.dumps(spec))
        return path

    def journal(self) -> list[dict[str, Any]]:
        return list(Journal(self.home / "journal.jsonl", "alice").entries())


def test_propose_a_refused_job_names_bob_the_rule_and_the_path(
        bob: Bob, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sfnode.cli import main

    with serving(bob) as port:
        alice = Alice(tmp_path, bob, port)
        # bob's federation file has alice's real address; the spec carries alice's ports only
        code = main(["propose", "--env-file", str(alice.env_file),
                     str(alice.spec("p1", "private/x.csv"))])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["ok"] is False
    assert out["decisions"]["bob"]["outcome"] == "refused"
    assert "party bob refused (peers.alice.datasets)" in out["error"]
    assert "private/x.csv" in out["error"]
    assert [(e["event"], e.get("outcome")) for e in alice.journal()][0] == ("proposal_sent", "refused")
    assert bob.queued == []


def test_a_manual_proposal_waits_and_a_refusal_reaches_the_initiator(
        bob: Bob, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sfnode.cli import main

    bob.node.policy = parse_policy({"version": 1, "peers": {"alice": {
        "kinds": {"psi": "manual"}, "datasets": ["shared/*"], "reveal_to": ["alice"]}}}, "bob")
    bob_env = bob.tmp_path / "bob.env"
    bob_env.write_text("".join(f"{k}={v}\n" for k, v in bob.config.to_env().items()))
    with serving(bob) as port:
        alice = Alice(tmp_path, bob, port)
        proposer = threading.Thread(daemon=True, target=lambda: results.append(main(
            ["propose", "--env-file", str(alice.env_file), "--decision-timeout", "20",
             str(alice.spec("p2"))])))
        results: list[int] = []
        proposer.start()
        record = bob.config.job_dir / ".proposals" / "p2.json"
        for _ in range(100):
            if record.exists():
                break
            proposer.join(0.1)
        assert json.loads(record.read_text())["outcome"] == "waiting"
        assert main(["refuse", "--env-file", str(bob_env), "p2", "--reason", "not this week"]) == 0
        proposer.join(10)
    assert not proposer.is_alive() and results == [1]
    out = capsys.readouterr().out
    answer = json.loads(out[out.rindex('{\n  "decisions"'):])
    assert answer["decisions"]["bob"]["outcome"] == "refused"
    assert "not this week" in answer["error"]
    assert bob.queued == []


def test_a_peer_without_a_rule_learns_nothing_of_bobs_files(bob: Bob) -> None:
    spec = carols_psi("j7", "private/x.csv", "no_such_column")
    with serving(bob) as port:
        _, answer = call(bob, port, "carol", "POST", "/v1/proposals", {"spec": spec})
    assert answer["rule"] == "peers", answer
    assert "column" not in answer["reason"] and "x.csv" not in answer["reason"]


def test_a_link_out_of_the_allowed_datasets_is_refused(bob: Bob) -> None:
    (bob.tmp_path / "data" / "shared" / "link.csv").symlink_to(
        bob.tmp_path / "data" / "private" / "x.csv")
    with serving(bob) as port:
        _, answer = call(bob, port, "alice", "POST", "/v1/proposals",
                         {"spec": psi_spec("j8", "shared/link.csv")})
    assert answer["outcome"] == "refused" and answer["rule"] == "peers.alice.datasets", answer


def test_a_cancelled_proposal_frees_the_peers_place(bob: Bob) -> None:
    with serving(bob) as port:
        assert call(bob, port, "alice", "POST", "/v1/proposals",
                    {"spec": psi_spec("j9")})[1]["outcome"] == "accepted"
        _, second = call(bob, port, "alice", "POST", "/v1/proposals", {"spec": psi_spec("j10")})
        assert second["rule"] == "peers.alice.max_concurrent_jobs", second
        call(bob, port, "alice", "POST", "/v1/jobs/j9/cancel", {"reason": "changed my mind"})
        # the cancelled job never started; its worker answered it (as the supervisor does)
        workdir = bob.config.job_dir / "j9"
        workdir.mkdir()
        (workdir / "result.json").write_text(json.dumps({"ok": False, "final": True,
                                                         "phase": "start"}))
        _, third = call(bob, port, "alice", "POST", "/v1/proposals", {"spec": psi_spec("j11")})
        assert third["outcome"] == "accepted", third


def test_a_job_that_ended_before_its_work_dir_frees_the_peers_place(bob: Bob) -> None:
    from sfnode.channel import note_end

    with serving(bob) as port:
        assert call(bob, port, "alice", "POST", "/v1/proposals",
                    {"spec": psi_spec("b1")})[1]["outcome"] == "accepted"
        call(bob, port, "alice", "POST", "/v1/jobs/b1/start", {})
        assert call(bob, port, "alice", "GET", "/v1/jobs/b1")[1]["state"] == "queued"
        # its slot was busy here: the worker answered before it made a work dir
        note_end(bob.config, "b1", {"ok": False, "phase": "start", "error": "slot 0 is busy"})
        state = call(bob, port, "alice", "GET", "/v1/jobs/b1")[1]
        assert (state["state"], state["phase"]) == ("failed", "start"), state
        assert call(bob, port, "alice", "POST", "/v1/proposals",
                    {"spec": psi_spec("b2")})[1]["outcome"] == "accepted"


def test_proposals_at_once_are_decided_one_by_one(bob: Bob) -> None:
    from concurrent.futures import ThreadPoolExecutor

    bob.node.policy = parse_policy({"version": 1, "peers": {"alice": {
        "kinds": {"psi": "accept"}, "datasets": ["shared/*"], "reveal_to": ["alice"],
        "max_concurrent_jobs": 2}}}, "bob")
    with serving(bob) as port, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: call(bob, port, "alice", "POST", "/v1/proposals",
                                               {"spec": psi_spec(f"c{i % 3}")})[1], range(12)))
    accepted = [a["job_id"] for a in answers if a["outcome"] == "accepted"]
    assert len(accepted) == 2 and len(set(accepted)) == 2, answers
    records = sorted(p.stem for p in (bob.config.job_dir / ".proposals").glob("*.json"))
    assert records == sorted(accepted)


def test_a_body_this_node_cannot_take_is_refused_and_it_keeps_serving(bob: Bob) -> None:
    with serving(bob) as port:
        status, answer = call(bob, port, "alice", "POST", "/v1/proposals",
                              raw=b'{"spec": {"job_id": "\\ud800"}}')
        assert status == 400, answer
        status, answer = call(bob, port, "alice", "POST", "/v1/proposals",
                              raw=b'{"spec": ' + b"[" * 100000 + b"]" * 100000 + b"}")
        assert status == 400, answer
        assert call(bob, port, "alice", "POST", "/v1/proposals",
                    {"spec": psi_spec("j12")})[1]["outcome"] == "accepted"


def test_one_view_of_a_job_shows_this_partys_own_error_and_each_peers_state(
        bob: Bob, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sfnode.cli import main

    with serving(bob) as port:
        call(bob, port, "alice", "POST", "/v1/proposals", {"spec": psi_spec("v1")})
        alice = Alice(tmp_path, bob, port)
        workdir = alice.home / "jobs" / "v1"
        workdir.mkdir()
        (workdir / "spec.json").write_text(json.dumps(psi_spec("v1")))
        (workdir / "result.json").write_text(json.dumps({
            "ok": False, "final": True, "phase": "run", "error": "ValueError in phase run: bad column"}))
        assert main(["job", "--env-file", str(alice.env_file), "v1"]) == 0
    view = json.loads(capsys.readouterr().out)["parties"]
    assert view["alice"]["state"] == "failed" and view["alice"]["error"] == "ValueError in phase run: bad column"
    assert view["bob"]["state"] == "accepted" and "error" not in view["bob"], view

"""The port gate: what it accepts from the worker, the nft transaction it makes, and
the request and answer over a real unix socket (nft itself is a stand-in here; the
federation scenario runs the real one in the firewall's table)."""
from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from sfnode import gate
from sfnode.config import NodeConfig
from sfnode.federation import Federation
from sfnode.gate import GateError, GateRequest, check_request, nft_script

# What `nft --json list set` printed on a test host for the gate's sets, one job
# running on ports 20009/21009 with peer 10.89.0.3, one v6 element added by hand.
LISTED = {
    "job_ports": {"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
                               {"set": {"family": "inet", "name": "job_ports", "table": "secretflow",
                                        "type": "inet_service", "handle": 3, "flags": ["timeout"],
                                        "elem": [{"elem": {"val": 20009, "timeout": 720, "expires": 705}},
                                                 {"elem": {"val": 21009, "timeout": 720, "expires": 705}}]}}]},
    "job_peers4": {"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
                                {"set": {"family": "inet", "name": "job_peers4", "table": "secretflow",
                                         "type": ["inet_service", "ipv4_addr"], "handle": 4,
                                         "flags": ["timeout"],
                                         "elem": [{"elem": {"val": {"concat": [20009, "10.89.0.3"]},
                                                            "timeout": 720, "expires": 705}},
                                                  {"elem": {"val": {"concat": [21009, "10.89.0.3"]},
                                                            "timeout": 720, "expires": 705}}]}}]},
    "job_peers6": {"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
                                {"set": {"family": "inet", "name": "job_peers6", "table": "secretflow",
                                         "type": ["inet_service", "ipv6_addr"], "handle": 5,
                                         "flags": ["timeout"]}}]},
}


def request(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"action": "open", "job_id": "psi-1", "ports": [20009, 21009],
                            "peers": ["10.89.0.3"], "seconds": 720}
    data.update(overrides)
    return data


class FakeNft:
    """Answers `nft --json list set` from LISTED and records every script."""

    def __init__(self, listed: dict[str, Any] | None = None, fail_apply: bool = False) -> None:
        self.listed = LISTED if listed is None else listed
        self.scripts: list[str] = []
        self.fail_apply = fail_apply

    def __call__(self, argv: Sequence[str], stdin: str) -> tuple[int, str, str]:
        if "list" in argv:
            name = argv[-1]
            if name not in self.listed:
                return 1, "", f"Error: No such file or directory; list set inet secretflow {name}"
            return 0, json.dumps(self.listed[name]), ""
        self.scripts.append(stdin)
        return (1, "", "Error: Could not process rule") if self.fail_apply else (0, "", "")


def test_a_jobs_request_passes(config: NodeConfig, federation: Federation) -> None:
    checked = check_request(request(peers=["10.89.0.4", "10.89.0.3", "10.89.0.3"]), config, federation)
    assert checked == GateRequest("open", "psi-1", (20009, 21009), ("10.89.0.3", "10.89.0.4"), 720)


@pytest.mark.parametrize("field, value, named", [
    ("action", "flush", "action 'flush' is not one of open, close"),
    ("ports", [20009, 30000], "ports [20009, 30000] are not a list of this node's own ports "
                              "(RAYFED_PORTS 20000-20031, SPU_PORTS 21000-21031)"),
    ("ports", [22], "ports [22] are not"),
    ("ports", [True], "ports [True] are not"),
    ("ports", [], "ports [] are not"),
    ("peers", ["10.89.0.2"], "peers ['10.89.0.2'] are not addresses of other parties of the "
                             "federation (10.89.0.3, 10.89.0.4)"),
    ("peers", ["192.0.2.1"], "peers ['192.0.2.1'] are not addresses"),
    ("peers", "10.89.0.3", "peers '10.89.0.3' are not addresses"),
    ("seconds", 3600 + gate.MARGIN_SECONDS + 1, "seconds 3721 is not a whole number from 1 to 3720"),
    ("seconds", 0, "seconds 0 is not"),
    ("job_id", "", "job_id '' is not a string"),
])
def test_the_gate_refuses_what_is_not_this_nodes_to_give(
        config: NodeConfig, federation: Federation, field: str, value: Any, named: str) -> None:
    with pytest.raises(GateError) as err:
        check_request(request(**{field: value}), config, federation)
    assert named in str(err.value)


def test_every_problem_of_a_request_is_named_at_once(config: NodeConfig, federation: Federation) -> None:
    with pytest.raises(GateError) as err:
        check_request(request(ports=[1], peers=["1.2.3.4"], seconds=-1), config, federation)
    assert [p.split(" ")[0] for p in str(err.value).split("; ")] == ["ports", "peers", "seconds"]
    with pytest.raises(GateError, match="not a JSON object"):
        check_request([1], config, federation)


def test_open_replaces_whatever_an_earlier_job_left_on_the_same_ports() -> None:
    present = {name: gate._element_values(listing) for name, listing in LISTED.items()}
    present["job_ports"].append(20010)  # another slot's job: not touched
    present["job_peers4"].append([20010, "10.89.0.4"])
    req = GateRequest("open", "j2", (20009, 21009), ("10.89.0.4", "fd00::4"), 60)
    assert nft_script("secretflow", req, present).splitlines() == [
        "delete element inet secretflow job_ports { 20009 }",
        "delete element inet secretflow job_ports { 21009 }",
        "delete element inet secretflow job_peers4 { 20009 . 10.89.0.3 }",
        "delete element inet secretflow job_peers4 { 21009 . 10.89.0.3 }",
        "add element inet secretflow job_ports { 20009 timeout 60s, 21009 timeout 60s }",
        "add element inet secretflow job_peers4 { 20009 . 10.89.0.4 timeout 60s, 21009 . 10.89.0.4 timeout 60s }",
        "add element inet secretflow job_peers6 { 20009 . fd00::4 timeout 60s, 21009 . fd00::4 timeout 60s }",
    ]


def test_close_only_deletes_and_a_closed_gate_needs_no_change() -> None:
    present = {name: gate._element_values(listing) for name, listing in LISTED.items()}
    close = GateRequest("close", "psi-1", (20009, 21009), ("10.89.0.3",), 720)
    assert all(line.startswith("delete element ") for line in
               nft_script("secretflow", close, present).splitlines())
    assert nft_script("secretflow", close, {"job_ports": [], "job_peers4": [], "job_peers6": []}) == ""


def test_apply_names_a_missing_table_and_a_refused_change() -> None:
    req = GateRequest("open", "psi-1", (20009,), ("10.89.0.3",), 60)
    with pytest.raises(GateError, match="nft cannot list set job_ports of table inet secretflow"):
        gate.apply("secretflow", req, FakeNft(listed={}))
    with pytest.raises(GateError, match="nft refused the change to table inet secretflow"):
        gate.apply("secretflow", req, FakeNft(fail_apply=True))
    assert gate.apply("secretflow", req, FakeNft()) == 2


def serve_once(path: Path, config: NodeConfig, nft: FakeNft, uid: int) -> threading.Thread:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def one() -> None:
        conn, _ = server.accept()
        with conn, server:
            gate.serve(conn, config, "secretflow", uid, nft)

    thread = threading.Thread(target=one, daemon=True)
    thread.start()
    return thread


def test_the_worker_asks_and_the_gate_answers_over_its_socket(tmp_path: Path, config: NodeConfig) -> None:
    nft = FakeNft()
    thread = serve_once(tmp_path / "gate.sock", config, nft, os.getuid())
    answer = gate.ask(tmp_path / "gate.sock", gate.job_request(
        "open", "psi-2", (20009, 21009), ["10.89.0.3"], 600))
    thread.join(5)
    assert answer["ok"] is True and answer["opened"] == 4 and answer["seconds"] == 720
    assert "add element inet secretflow job_peers4 { 20009 . 10.89.0.3 timeout 720s" in nft.scripts[0]


def test_only_the_workers_user_may_ask_and_a_refusal_is_named(tmp_path: Path, config: NodeConfig) -> None:
    nft = FakeNft()
    thread = serve_once(tmp_path / "gate.sock", config, nft, os.getuid() + 1)
    with pytest.raises(GateError, match=f"the port gate refused to open the ports of job 'psi-3': "
                                        f"uid {os.getuid()} may not use the gate"):
        gate.ask(tmp_path / "gate.sock", gate.job_request("open", "psi-3", (20009,), [], 60))
    thread.join(5)
    assert nft.scripts == []
    thread = serve_once(tmp_path / "gate2.sock", config, nft, os.getuid())
    with pytest.raises(GateError, match="peers \\['192.0.2.9'\\] are not addresses"):
        gate.ask(tmp_path / "gate2.sock", gate.job_request("open", "psi-3", (20009,), ["192.0.2.9"], 60))
    thread.join(5)


def test_a_gate_that_is_not_there_is_named(tmp_path: Path) -> None:
    with pytest.raises(GateError, match=f"the port gate at {tmp_path}/none.sock did not answer"):
        gate.ask(tmp_path / "none.sock", gate.job_request("open", "j", (20009,), [], 60))


def test_the_helper_answers_the_connection_systemd_hands_it(
        tmp_path: Path, config: NodeConfig, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """python -m sfnode.gate with the accepted connection as standard input (Accept=yes)."""
    import pwd

    env_file = tmp_path / "node.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in config.to_env().items()))
    monkeypatch.setattr(gate, "apply", lambda table, request, nft: 4)  # nft itself: FakeNft's tests
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.sendall(json.dumps(request()).encode() + b"\n")
        code = gate.main(["--env-file", str(env_file), "--table", "secretflow",
                          "--user", pwd.getpwuid(os.getuid()).pw_name], stdin=theirs.makefile("rb"))
        answer = json.loads(ours.recv(4096))
    assert code == 0 and answer["ok"] is True and answer["opened"] == 4, answer
    assert '"job_id": "psi-1"' in capsys.readouterr().err  # one line in the journal
    assert gate.main(["--env-file", str(tmp_path / "none.env"), "--table", "t", "--user", "root"]) == 2

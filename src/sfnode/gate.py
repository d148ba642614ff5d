"""The port gate: while a job runs, its two ports take only that job's parties.

The firewall (roles/firewall) lets every party of the federation reach this
node's rayfed and SPU ranges. TLS keeps strangers out of a job, but SPU's
server also takes clear-text connections, so a federation party that is not
in a job could still talk to that job's SPU port. The gate closes that: the
worker asks it to mark the job's slot ports *busy* (dropped for everyone)
except for the job's own peers, for as long as the job may run, and to lift
that when the job ends. Elements carry a timeout, so a worker that dies
leaves nothing behind for longer than the job's deadline.

Changing nftables sets takes CAP_NET_ADMIN, which the worker does not have,
so the worker asks a root helper over a unix socket (systemd socket
activation, one process per request: ``python -m sfnode.gate``). The helper
trusts nothing in a request: the asker must be the worker's user, the ports
this node's own, the peers parties of its federation file, the time at most
the longest deadline this node accepts.

The protocol is one JSON object per connection each way::

    {"action": "open", "job_id": "j1", "ports": [20009, 21009],
     "peers": ["10.0.0.3"], "seconds": 720}
    {"ok": true, "opened": 2}        or {"ok": false, "error": "..."}
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import pwd
import socket
import struct
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from sfnode.config import ConfigError, NodeConfig
from sfnode.federation import Federation, FederationError, load_federation

ACTIONS = ("open", "close")
REQUEST_LIMIT_BYTES = 65536
# What the gate adds to a job's deadline: the supervisor kills the runner at
# the deadline and closes the gate after it; this covers the kill's grace.
MARGIN_SECONDS = 120
ASK_TIMEOUT_SECONDS = 20.0
NFT = "/usr/sbin/nft"
# The sets of the firewall's table (roles/firewall/templates/firewall.nft.j2).
BUSY_SET = "job_ports"
PEER_SETS = {4: "job_peers4", 6: "job_peers6"}

# (argv, stdin text) -> (exit code, stdout, stderr)
NftRunner = Callable[[Sequence[str], str], tuple[int, str, str]]


class GateError(RuntimeError):
    """The gate refused a request or could not be asked."""


@dataclass(frozen=True)
class GateRequest:
    action: str
    job_id: str
    ports: tuple[int, ...]
    peers: tuple[str, ...]
    seconds: int

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "job_id": self.job_id, "ports": list(self.ports),
                "peers": list(self.peers), "seconds": self.seconds}


def job_request(action: str, job_id: str, ports: Iterable[int], peers: Iterable[str],
                deadline_seconds: int) -> GateRequest:
    """What the supervisor asks for a job: its slot's ports, its peers' addresses."""
    return GateRequest(action, job_id, tuple(ports), tuple(sorted(set(peers))),
                       deadline_seconds + MARGIN_SECONDS)


def check_request(data: Any, config: NodeConfig, federation: Federation) -> GateRequest:
    """The request as the gate will carry it out; GateError naming every problem."""
    if not isinstance(data, Mapping):
        raise GateError("the request is not a JSON object")
    problems: list[str] = []
    action = data.get("action")
    if action not in ACTIONS:
        problems.append(f"action {action!r} is not one of {', '.join(ACTIONS)}")
    job_id = data.get("job_id")
    if not isinstance(job_id, str) or not job_id or len(job_id) > 128:
        problems.append(f"job_id {job_id!r} is not a string of 1 to 128 characters")
    ports = data.get("ports")
    own = (config.rayfed_ports, config.spu_ports)
    if not isinstance(ports, list) or not ports or not all(
            isinstance(p, int) and not isinstance(p, bool) and any(p in r for r in own) for p in ports):
        problems.append(f"ports {ports!r} are not a list of this node's own ports "
                        f"(RAYFED_PORTS {config.rayfed_ports}, SPU_PORTS {config.spu_ports})")
    peers = data.get("peers")
    known = {p.ip for p in federation if p.id != config.node_id}
    if not isinstance(peers, list) or not all(isinstance(p, str) and p in known for p in peers):
        problems.append(f"peers {peers!r} are not addresses of other parties of the federation "
                        f"({', '.join(sorted(known)) or 'none'})")
    seconds = data.get("seconds")
    longest = config.job_max_deadline_seconds + MARGIN_SECONDS
    if not isinstance(seconds, int) or isinstance(seconds, bool) or not 1 <= seconds <= longest:
        problems.append(f"seconds {seconds!r} is not a whole number from 1 to {longest}")
    if problems:
        raise GateError("; ".join(problems))
    assert isinstance(action, str) and isinstance(job_id, str)
    assert isinstance(ports, list) and isinstance(peers, list) and isinstance(seconds, int)
    return GateRequest(action, job_id, tuple(ports), tuple(sorted(set(peers))), seconds)


def _ip_version(address: str) -> int:
    return ipaddress.ip_address(address).version


def _element_values(listing: Mapping[str, Any]) -> list[Any]:
    """The values of a set in ``nft -j list set`` output: a port, or [port, address]."""
    values = []
    for item in listing.get("nftables", []):
        for elem in (item.get("set") or {}).get("elem", []) or []:
            value = elem.get("elem", {}).get("val") if isinstance(elem, Mapping) and "elem" in elem else elem
            if isinstance(value, Mapping) and "concat" in value:
                value = list(value["concat"])
            values.append(value)
    return values


def _render(value: Any) -> str:
    return " . ".join(str(v) for v in value) if isinstance(value, list) else str(value)


def nft_script(table: str, request: GateRequest, present: Mapping[str, list[Any]]) -> str:
    """One nft transaction: drop every element of the request's ports (whatever job
    left them), then, to open, mark the ports busy and let the peers in."""
    ports = set(request.ports)
    lines = []
    for name, values in present.items():
        for value in values:
            port = value[0] if isinstance(value, list) else value
            if port in ports:
                lines.append(f"delete element inet {table} {name} {{ {_render(value)} }}")
    if request.action == "open":
        timeout = f"timeout {request.seconds}s"
        busy = ", ".join(f"{p} {timeout}" for p in request.ports)
        lines.append(f"add element inet {table} {BUSY_SET} {{ {busy} }}")
        for version, name in PEER_SETS.items():
            pairs = [f"{port} . {peer} {timeout}" for port in request.ports for peer in request.peers
                     if _ip_version(peer) == version]
            if pairs:
                lines.append(f"add element inet {table} {name} {{ {', '.join(pairs)} }}")
    return "".join(line + "\n" for line in lines)


def run_nft(argv: Sequence[str], stdin: str) -> tuple[int, str, str]:
    proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def apply(table: str, request: GateRequest, nft: NftRunner = run_nft) -> int:
    """Carry out a checked request; the number of elements added. GateError when nft fails."""
    present: dict[str, list[Any]] = {}
    for name in (BUSY_SET, *PEER_SETS.values()):
        code, out, err = nft([NFT, "--json", "list", "set", "inet", table, name], "")
        if code != 0:
            raise GateError(f"nft cannot list set {name} of table inet {table} (is the "
                            f"firewall loaded?): {err.strip()}")
        present[name] = _element_values(json.loads(out or "{}"))
    script = nft_script(table, request, present)
    if not script:
        return 0
    code, _, err = nft([NFT, "--file", "-"], script)
    if code != 0:
        raise GateError(f"nft refused the change to table inet {table}: {err.strip()}")
    return len(request.ports) * (1 + len(request.peers)) if request.action == "open" else 0


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a unix socket (SO_PEERCRED)."""
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    return int(struct.unpack("3i", creds)[1])


def serve(conn: socket.socket, config: NodeConfig, table: str, allowed_uid: int,
          nft: NftRunner = run_nft) -> dict[str, Any]:
    """Answer one request on ``conn``; the answer is also returned (for the journal)."""
    try:
        raw = _read_request(conn)  # first, so that the asker reads the answer, whatever it is
        uid = peer_uid(conn)
        if uid != allowed_uid:
            raise GateError(f"uid {uid} may not use the gate (only the worker's user)")
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise GateError(f"the request is not JSON: {exc}") from None
        federation = load_federation(config.federation_file)
        request = check_request(data, config, federation)
        opened = apply(table, request, nft)
        answer: dict[str, Any] = {"ok": True, **request.to_dict(), "opened": opened}
    except (GateError, FederationError) as exc:
        answer = {"ok": False, "error": str(exc)}
    conn.sendall(json.dumps(answer).encode() + b"\n")
    return answer


def _read_line(sock: socket.socket, what: str) -> bytes:
    """One JSON line (either side of the protocol), at most REQUEST_LIMIT_BYTES long."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > REQUEST_LIMIT_BYTES:
            raise GateError(f"the {what} is longer than {REQUEST_LIMIT_BYTES} bytes")
    return data


def _read_request(conn: socket.socket) -> bytes:
    conn.settimeout(ASK_TIMEOUT_SECONDS)
    return _read_line(conn, "request")


def ask(socket_path: str | os.PathLike[str], request: GateRequest,
        timeout: float = ASK_TIMEOUT_SECONDS) -> dict[str, Any]:
    """Send ``request`` to the gate; its answer, or GateError saying what went wrong."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(os.fspath(socket_path))
            sock.sendall(json.dumps(request.to_dict()).encode() + b"\n")
            reply = _read_line(sock, "answer")
    except OSError as exc:
        raise GateError(f"the port gate at {os.fspath(socket_path)} did not answer: "
                        f"{exc.strerror or exc}") from None
    try:
        answer = json.loads(reply)
    except ValueError:
        raise GateError(f"the port gate at {os.fspath(socket_path)} gave no answer") from None
    if not isinstance(answer, dict) or answer.get("ok") is not True:
        error = answer.get("error") if isinstance(answer, dict) else answer
        raise GateError(f"the port gate refused to {request.action} the ports of job "
                        f"{request.job_id!r}: {error}")
    return answer


def main(argv: list[str] | None = None, stdin: BinaryIO | None = None) -> int:
    """One request on the connection systemd passed as standard input (Accept=yes)."""
    parser = argparse.ArgumentParser(prog="python -m sfnode.gate", description=__doc__.splitlines()[0])
    parser.add_argument("--env-file", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--user", required=True, help="the only user that may ask (the worker's)")
    args = parser.parse_args(argv)
    try:
        config = NodeConfig.from_env_file(args.env_file)
        allowed = pwd.getpwnam(args.user).pw_uid
    except (ConfigError, KeyError) as exc:
        print(f"sfnode.gate: {exc}", file=sys.stderr)
        return 2
    conn = socket.socket(fileno=(stdin or sys.stdin.buffer).fileno())
    try:
        answer = serve(conn, config, args.table, allowed)
    finally:
        conn.detach()
    # one line in the journal per request: who is let in where, or why not
    # (a refusal is an answer, not a failure of the unit)
    print(f"sfnode.gate: {json.dumps(answer, sort_keys=True)}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

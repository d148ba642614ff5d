"""Network probes: is a TCP port open, how does a host answer, what listens here.

The runner asks whether its peers' rayfed ports opened, the supervisor which
peers went silent past a deadline, ``sfnode status`` how every peer answers
and which sockets listen on this node. None of them raises.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path

CONNECT_TIMEOUT_SECONDS = 2.0
LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp


def port_state(host: str, port: int, timeout: float = CONNECT_TIMEOUT_SECONDS) -> str:
    """``listening`` (a connection opened), ``refused`` (the host answered that
    nothing listens: the path works), ``filtered`` (no answer: a firewall
    drops it) or ``unreachable`` (no route)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return "listening"
    except ConnectionRefusedError:
        return "refused"
    except OSError as exc:
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "unreachable"
        return "filtered"


def tcp_port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something listens on ``host:port`` (a connection opened within ``timeout``)."""
    return port_state(host, port, timeout) == "listening"


def listening_sockets(proc_net: Path = Path("/proc/net")) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state (IPv4 and IPv6)."""
    found: set[tuple[str, int]] = set()
    for name, v6 in (("tcp", False), ("tcp6", True)):
        try:
            lines = (proc_net / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or fields[3] != LISTEN:
                continue
            address, _, port = fields[1].partition(":")
            found.add((_decode_address(address, v6), int(port, 16)))
    return found


def _decode_address(hexaddr: str, v6: bool) -> str:
    raw = bytes.fromhex(hexaddr)
    # /proc/net stores each 32-bit word in host (little-endian) order
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET6 if v6 else socket.AF_INET
    return socket.inet_ntop(family, words)

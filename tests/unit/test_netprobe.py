"""Network probes against real loopback sockets and a stand-in /proc/net."""
from __future__ import annotations

import socket
from pathlib import Path

from sfnode.netprobe import listening_sockets, port_state, tcp_port_open


def test_port_state_tells_listening_from_refused() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert port_state("127.0.0.1", listener.getsockname()[1]) == "listening"
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    assert port_state("127.0.0.1", port) == "refused"


def test_listening_sockets_reads_proc_net(tmp_path: Path) -> None:
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    (tmp_path / "tcp").write_text(
        header
        + "   0: 0100007F:EBBB 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101 0 1\n"
        + "   1: 0200590A:EFBB 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999 0 2\n"
        + "   2: 0200590A:EFBB 0300590A:9C40 01 00000000:00000000 00:00000000 00000000   999 0 3\n")
    (tmp_path / "tcp6").write_text(header)
    assert listening_sockets(tmp_path) == {("127.0.0.1", 60347), ("10.89.0.2", 61371)}


def test_tcp_port_open_only_where_something_listens() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        open_port = listener.getsockname()[1]
        assert tcp_port_open("127.0.0.1", open_port)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
        assert not tcp_port_open("127.0.0.1", closed_port)

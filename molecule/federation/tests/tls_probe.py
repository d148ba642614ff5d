"""What a TCP client sees on a party's port (run inside a test host with its
system python3; prints one JSON object).

  tls_probe.py plain HOST PORT
      sends an HTTP/2 client preface in clear text and reports the first
      bytes that come back: a TLS server answers with an alert record
      (0x15) or closes; a clear-text gRPC or brpc server answers with HTTP.
      A connection that does not open is reported with its error
      (ConnectionRefusedError: nothing listens; TimeoutError: dropped).
  tls_probe.py tls HOST PORT [CERT KEY]
      a TLS handshake (the server's certificate is not verified: the test
      compares it), with the client certificate CERT/KEY or with none, then
      one read: a server that requires and checks client certificates
      refuses the client here (TLS 1.3 reports it after the handshake) with
      an alert or by closing; one that took it sends data or waits.
"""
from __future__ import annotations

import json
import socket
import ssl
import sys

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def plain(host: str, port: int) -> dict:
    try:
        sock = socket.create_connection((host, port), 5)
    except OSError as exc:
        # refused: the host answered that nothing listens; a timeout: a firewall dropped it
        return {"connected": False, "error": type(exc).__name__}
    with sock:
        sock.settimeout(5)
        sock.sendall(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        try:
            first = sock.recv(64)
        except (socket.timeout, ConnectionResetError) as exc:
            return {"connected": True, "first_bytes": "", "error": type(exc).__name__}
    return {"connected": True, "first_bytes": first.hex()}


def tls(host: str, port: int, cert: str | None, key: str | None) -> dict:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    # as a gRPC client does: a gRPC server closes a TLS connection that did not negotiate h2
    context.set_alpn_protocols(["h2"])
    if cert:
        context.load_cert_chain(cert, key)
    outcome: dict = {"handshake": False, "accepted": False}
    try:
        with socket.create_connection((host, port), 5) as raw:
            with context.wrap_socket(raw, server_hostname=host) as sock:
                outcome["handshake"] = True
                outcome["server_certificate"] = ssl.DER_cert_to_PEM_cert(sock.getpeercert(binary_form=True))
                sock.settimeout(3)
                try:
                    # a server that took us sends its first data (gRPC: HTTP/2 settings);
                    # one that refused our certificate sends an alert (an error here) or
                    # closes the connection (nothing to read)
                    outcome["accepted"] = len(sock.recv(1)) > 0
                except socket.timeout:
                    outcome["accepted"] = True  # the server waits for our request: it took us
    except (ssl.SSLError, OSError) as exc:
        outcome["error"] = f"{type(exc).__name__}: {exc}"
    return outcome


def main(argv: list[str]) -> None:
    mode, host, port = argv[0], argv[1], int(argv[2])
    if mode == "plain":
        print(json.dumps(plain(host, port)))
    else:
        print(json.dumps(tls(host, port, *(argv[3:5] if len(argv) > 3 else (None, None)))))


if __name__ == "__main__":
    main(sys.argv[1:])

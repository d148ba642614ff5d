"""One call to a party's job channel, as a client holding a party's key would
make it (run inside a test host with its system python3; prints one JSON
object: the status and the answer, or the error).

  channel_probe.py HOST PORT CERT KEY CALL
      CALL is one of
        malformed  POST /v1/proposals with a body that is not JSON
        big        POST /v1/proposals with a body over 1 MiB
        unknown    POST /v1/proposals with a field the API does not have
        get:JOB    GET /v1/jobs/JOB
The server's certificate is not verified: the client's is what is tested.
"""
from __future__ import annotations

import http.client
import json
import ssl
import sys


def call(host: str, port: int, cert: str, key: str, what: str) -> dict:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(cert, key)
    method, path, body = "POST", "/v1/proposals", b""
    if what == "malformed":
        body = b'{"spec": {"job_id": '
    elif what == "big":
        body = json.dumps({"spec": {"pad": "x" * (1024 * 1024 + 10)}}).encode()
    elif what == "unknown":
        body = json.dumps({"spec": {}, "run_as": "root"}).encode()
    elif what.startswith("get:"):
        method, path = "GET", f"/v1/jobs/{what[4:]}"
    connection = http.client.HTTPSConnection(host, port, context=context, timeout=10)
    try:
        connection.request(method, path, body=body or None, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        raw = response.read()
    except (OSError, http.client.HTTPException) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        connection.close()
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = raw[:200].decode(errors="replace")
    return {"status": response.status, "answer": answer}


if __name__ == "__main__":
    host, port, cert, key, what = sys.argv[1:6]
    print(json.dumps(call(host, int(port), cert, key, what)))

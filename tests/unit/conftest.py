from __future__ import annotations

import datetime
import ipaddress
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from sfnode.config import NodeConfig
from sfnode.federation import Federation, parse_federation
from sfnode.sfargs import JobContext
from sfnode.spec import SpecError, validate_spec

FEDERATION = {
    "version": 1,
    "parties": [
        {"id": "alice", "ip": "10.89.0.2", "rayfed_ports": [20000, 20031],
         "spu_ports": [21000, 21031]},
        {"id": "bob", "ip": "10.89.0.3", "rayfed_ports": [20000, 20031],
         "spu_ports": [21000, 21031]},
        {"id": "carol", "ip": "10.89.0.4", "rayfed_ports": [30000, 30003],
         "spu_ports": [31000, 31003]},
    ],
}


def env_for(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {
        "NODE_ID": "alice",
        "NODE_IP": "10.89.0.2",
        "APP_ENV": "production",
        "REDIS_URL": "redis://:secret@127.0.0.1:60379/0",
        "RESULT_BACKEND_URL": "redis://:secret@127.0.0.1:60379/1",
        "RAY_PORT": "61379",
        "RAYFED_PORTS": "20000-20031",
        "SPU_PORTS": "21000-21031",
        "FEDERATION_FILE": str(tmp_path / "federation.json"),
        "DATA_DIR": str(tmp_path / "data"),
        "JOB_DIR": str(tmp_path / "jobs"),
        "JOB_DEADLINE_SECONDS": "600",
        "CELERY_QUEUE": "secretflow",
        "WORKER_CONCURRENCY": "2",
        "SERVICE_UNITS": "redis=broker-a.service,ray_head=ray-a.service,"
                         "worker=worker-a.service",
    }
    env.update(overrides)
    return env


@pytest.fixture
def federation_data() -> dict[str, Any]:
    return json.loads(json.dumps(FEDERATION))


@pytest.fixture
def federation(federation_data: dict[str, Any]) -> Federation:
    return parse_federation(federation_data)


@pytest.fixture
def config(tmp_path: Path, federation_data: dict[str, Any]) -> NodeConfig:
    (tmp_path / "federation.json").write_text(json.dumps(federation_data))
    (tmp_path / "data").mkdir()
    (tmp_path / "jobs").mkdir()
    return NodeConfig.from_mapping(env_for(tmp_path))


def make_certificate(name: str, ip: str, days: float = 365, ca: bool = True) -> tuple[str, str]:
    """A self-signed certificate and its key (PEM), like the node role makes: EC P-256,
    the node's IP as subject alternative name, valid from an hour ago for ``days``
    (negative: expired); ``ca`` false: CA:FALSE, for server and client use, as a node's."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    not_after = now + datetime.timedelta(days=days)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(min(now, not_after) - datetime.timedelta(hours=1))
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH,
                                                         x509.ExtendedKeyUsageOID.CLIENT_AUTH]),
                                  critical=False)
    cert = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


@pytest.fixture(scope="session")
def certificates() -> dict[str, tuple[str, str]]:
    """Each federation party's (certificate, key), made once per test session."""
    return {p["id"]: make_certificate(p["id"], p["ip"]) for p in FEDERATION["parties"]}


def tls_node(tmp_path: Path, federation_data: dict[str, Any],
             certificates: dict[str, tuple[str, str]],
             with_certificate: Iterable[str] = ("alice", "bob", "carol"),
             tls: bool = True) -> tuple[NodeConfig, Federation]:
    """Node alice (TLS on when ``tls``) in a federation whose parties ``with_certificate``
    publish their certificate; alice's certificate and key are written to ``tmp_path/tls``."""
    for entry in federation_data["parties"]:
        if entry["id"] in with_certificate:
            entry["certificate"] = certificates[entry["id"]][0]
    (tmp_path / "federation.json").write_text(json.dumps(federation_data))
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "jobs").mkdir(exist_ok=True)
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir(exist_ok=True)
    cert, key = certificates["alice"]
    (tls_dir / "node.crt").write_text(cert)
    (tls_dir / "node.key").write_text(key)
    overrides = ({"TLS_CERT": str(tls_dir / "node.crt"), "TLS_KEY": str(tls_dir / "node.key")}
                 if tls else {})
    return (NodeConfig.from_mapping(env_for(tmp_path, **overrides)),
            parse_federation(federation_data))


def party(pid: str, slot: int = 0) -> dict[str, Any]:
    entry = next(p for p in FEDERATION["parties"] if p["id"] == pid)
    return {"id": pid, "ip": entry["ip"], "rayfed_port": entry["rayfed_ports"][0] + slot,
            "spu_port": entry["spu_ports"][0] + slot}


def full_spec(kind: str = "ping", parties: tuple[str, ...] = ("alice", "bob"), slot: int = 0,
              **extra: Any) -> dict[str, Any]:
    spec = {"job_id": f"{kind.replace('_', '-')}-0001", "kind": kind, "slot": slot,
            "deadline_seconds": 60, "parties": [party(p, slot) for p in parties], "params": {}}
    spec.update(extra)
    return spec


def problems_of(spec: Any, config: NodeConfig, federation: Federation) -> dict[str, Any]:
    with pytest.raises(SpecError) as err:
        validate_spec(spec, config, federation)
    return {p.field: p for p in err.value.problems}


def one_problem(spec: Any, config: NodeConfig, federation: Federation) -> SpecError:
    with pytest.raises(SpecError) as err:
        validate_spec(spec, config, federation)
    assert len(err.value.problems) == 1, err.value.problems
    return err.value


def job_context(config: NodeConfig, federation: Federation, spec: dict[str, Any],
                workdir: Path) -> JobContext:
    return JobContext(spec=validate_spec(spec, config, federation), config=config,
                      workdir=workdir)


class FakeObject:
    def __init__(self, owner: str, value: Any) -> None:
        self.owner, self.value = owner, value

    def to(self, device: Any) -> FakeObject:
        return FakeObject(getattr(device, "party", "spu"), self.value)


class FakeSF:
    """Records what each PYU is asked to compute, like production mode on one party."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        sf = self

        class PYU:
            def __init__(self, party: str) -> None:
                self.party = party

            def __call__(self, fn: Any) -> Any:
                def call(*args: Any) -> FakeObject:
                    sf.calls.append((self.party, args))
                    values = [a.value if isinstance(a, FakeObject) else a for a in args]
                    return FakeObject(self.party, fn(*values))
                return call

        class SPU:
            def __init__(self, cluster_def: dict[str, Any], link_desc: dict[str, Any]) -> None:
                self.cluster_def = cluster_def

            def __call__(self, fn: Any) -> Any:
                return lambda *objs: FakeObject("spu", fn(*[o.value for o in objs]))

        self.PYU, self.SPU = PYU, SPU

    def reveal(self, obj: Any) -> Any:
        return [o.value for o in obj] if isinstance(obj, list) else obj.value

"""The node status verdict, with stand-in probes (no Redis, Ray or systemd)."""
from __future__ import annotations

import datetime
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from conftest import make_certificate, tls_node
from sfnode.config import NodeConfig
from sfnode.federation import parse_federation
from sfnode.status import Probes, certificates_state, disk_state, node_status, parse_expect

HEALTHY_SOCKETS = {("127.0.0.1", 60379), ("10.89.0.2", 61379)}


def probes(**overrides: Any) -> Probes:
    base: dict[str, Any] = {
        "unit": lambda unit: {"active": "active", "sub": "running", "uptime_seconds": 42},
        "redis": lambda cfg: {"answers": True, "used_memory": 10, "maxmemory": 100,
                              "aof_enabled": True, "aof_last_write_status": "ok", "queue_length": 0},
        "celery": lambda cfg: {"answers": True, "workers": ["alice@node"], "round_trip_ms": 12},
        "ray": lambda cfg: {"answers": True, "resources": {"CPU": 2.0}},
        "listening": lambda: set(HEALTHY_SOCKETS),
        "port": lambda ip, port: "refused",
        "versions": lambda: {"python": "3.10.16"},
        "disk": lambda cfg: {"path": str(cfg.job_dir), "free_bytes": 50 * 1024**3, "total_bytes": 100 * 1024**3},
    }
    base.update(overrides)
    return Probes(**base)


def test_a_healthy_node_reports_ok_with_every_peer_in_the_matrix(config: NodeConfig) -> None:
    report = node_status(config, probes())
    assert report["ok"] is True, report["problems"]
    assert report["problems"] == []
    assert set(report["reachability"]) == {"bob", "carol"}
    assert report["reachability"]["carol"] == {"ip": "10.89.0.4", "rayfed_port": 30000, "spu_port": 31000,
                                               "rayfed": "refused", "spu": "refused", "open": True}
    assert report["units"]["ray-a.service"]["what"] == "Ray head"


@pytest.mark.parametrize("overrides,expected", [
    ({"unit": lambda u: {"active": "inactive", "sub": "dead", "uptime_seconds": None}
      if u == "ray-a.service" else {"active": "active", "sub": "running", "uptime_seconds": 1}},
     "Ray head (ray-a.service) is inactive (dead)"),
    ({"redis": lambda cfg: {"answers": False, "error": "AuthenticationError: invalid password"}},
     "redis: no answer with the password: AuthenticationError"),
    ({"redis": lambda cfg: {"answers": True, "used_memory": 95, "maxmemory": 100, "aof_enabled": True,
                            "aof_last_write_status": "ok", "queue_length": 3}},
     "redis: 95 of 100 bytes used"),
    ({"redis": lambda cfg: {"answers": True, "used_memory": 1, "maxmemory": 100, "aof_enabled": False}},
     "append-only file is off"),
    ({"ray": lambda cfg: {"answers": False, "error": "no answer from the Ray head"}},
     "Ray head at 10.89.0.2:61379: no answer"),
    ({"celery": lambda cfg: {"answers": False, "error": "no worker named alice@... answered"}},
     "worker: no worker named alice@"),
    ({"listening": lambda: {("10.89.0.2", 61379)}}, "redis: nothing listens on 127.0.0.1:60379"),
    ({"listening": lambda: HEALTHY_SOCKETS | {("0.0.0.0", 60379)}}, "redis: listens on 0.0.0.0:60379"),
    ({"port": lambda ip, port: "filtered" if ip == "10.89.0.3" and port == 21000 else "refused"},
     "spu port 21000 of bob (10.89.0.3): filtered from alice"),
    # 4 GiB free is below 5% of 100 GiB
    ({"disk": lambda cfg: {"path": "/var/lib/secretflow/jobs", "free_bytes": 4 * 1024**3,
                           "total_bytes": 100 * 1024**3}},
     "disk: 4294967296 of 107374182400 bytes free on /var/lib/secretflow/jobs"),
    ({"disk": lambda cfg: {"path": "/var/lib/secretflow/jobs", "error": "FileNotFoundError: gone"}},
     "disk: cannot tell the free space of /var/lib/secretflow/jobs"),
])
def test_each_fault_is_named(config: NodeConfig, overrides: dict, expected: str) -> None:
    report = node_status(config, probes(**overrides))
    assert report["ok"] is False
    assert any(expected in p for p in report["problems"]), report["problems"]


def test_a_filtered_port_closes_the_pair(config: NodeConfig) -> None:
    report = node_status(config, probes(port=lambda ip, port: "filtered" if port == 21000 else "listening"))
    assert report["reachability"]["bob"]["open"] is False
    assert report["reachability"]["carol"]["open"] is True


def test_the_worker_is_not_pinged_when_its_broker_is_down(config: NodeConfig) -> None:
    pinged = []
    report = node_status(config, probes(redis=lambda cfg: {"answers": False, "error": "ConnectionError: refused"},
                                        celery=lambda cfg: pinged.append(1) or {"answers": True}))
    assert not pinged
    assert report["celery"]["answers"] is False
    assert report["ok"] is False


def test_expected_sockets_from_the_inventory_are_checked(config: NodeConfig) -> None:
    expect = parse_expect(["node_manager=10.89.0.2:61385"])
    assert expect == {"node_manager": ("10.89.0.2", 61385)}
    report = node_status(config, probes(), expect=expect)
    assert "node_manager: nothing listens on 10.89.0.2:61385" in report["problems"]
    listening = HEALTHY_SOCKETS | {("0.0.0.0", 61385)}
    assert node_status(config, probes(listening=lambda: listening), expect=expect)["ok"] is True


@pytest.mark.parametrize("item", ["node_manager", "x=10.0.0.1", "=10.0.0.1:5", "x=10.0.0.1:port"])
def test_a_malformed_expectation_is_refused(item: str) -> None:
    with pytest.raises(ValueError, match="NAME=ADDRESS:PORT"):
        parse_expect([item])


def test_a_federation_file_without_this_node_is_a_problem(config: NodeConfig, tmp_path: Path) -> None:
    config.federation_file.write_text('{"version": 1, "parties": []}')
    report = node_status(config, probes())
    assert report["ok"] is False and report["problems"], report


def test_units_come_from_the_config_in_its_order(config: NodeConfig) -> None:
    units = (("worker", "w.service"), ("metrics", "m.service"), ("redis", "r.service"))
    report = node_status(replace(config, service_units=units), probes())
    assert list(report["units"]) == ["w.service", "m.service", "r.service"]
    assert [u["what"] for u in report["units"].values()] == ["worker", "metrics", "Redis"]


def test_a_stopped_unit_is_named_by_its_component(config: NodeConfig) -> None:
    down = probes(unit=lambda u: {"active": "failed", "sub": "failed", "uptime_seconds": None})
    report = node_status(replace(config, service_units=(("ray_head", "x-ray.service"),)), down)
    assert report["problems"] == ["Ray head (x-ray.service) is failed (failed)"]


def test_without_units_none_is_asked(config: NodeConfig) -> None:
    asked: list[str] = []
    report = node_status(replace(config, service_units=()),
                         probes(unit=lambda u: asked.append(u) or {}))
    assert asked == [] and report["units"] == {} and report["ok"] is True


def test_free_space_is_reported(config: NodeConfig, tmp_path: Path) -> None:
    report = node_status(config, probes(disk=disk_state))
    disk = report["disk"]
    assert disk["path"] == str(config.job_dir)
    assert 0 < disk["free_bytes"] <= disk["total_bytes"]


# --- certificates ----------------------------------------------------------------------------

Certs = dict[str, tuple[str, str]]


def test_without_tls_each_party_is_reported_without_certificate(config: NodeConfig) -> None:
    report = node_status(config, probes())
    assert report["certificates"] == [{"party": "alice", "tls": False},
                                      {"party": "bob", "tls": False},
                                      {"party": "carol", "tls": False}]
    assert report["warnings"] == [] and report["ok"] is True


def test_each_certificates_expiry_is_reported(federation_data: dict[str, Any]) -> None:
    cert, _ = make_certificate("bob", "10.89.0.3", days=365)
    federation_data["parties"][1]["certificate"] = cert
    fed = parse_federation(federation_data)
    from cryptography import x509

    not_after = x509.load_pem_x509_certificate(cert.encode()).not_valid_after_utc
    at = not_after - datetime.timedelta(days=100, hours=1)
    rows = certificates_state(fed, now=at)
    assert rows == [{"party": "alice", "tls": False},
                    {"party": "bob", "tls": True,
                     "not_after": not_after.strftime("%Y-%m-%dT%H:%M:%SZ"), "days_left": 100},
                    {"party": "carol", "tls": False}]
    assert rows[1]["not_after"].endswith("Z")
    # from now: a year less the hour or so since it was made
    assert certificates_state(fed)[1]["days_left"] == 364


def test_a_certificate_close_to_its_end_is_a_warning_not_a_problem(
        tmp_path: Path, federation_data: dict[str, Any], certificates: Certs) -> None:
    config, _ = tls_node(tmp_path, federation_data, certificates)
    federation_data["parties"][1]["certificate"] = make_certificate("bob", "10.89.0.3", days=10)[0]
    config.federation_file.write_text(json.dumps(federation_data))
    report = node_status(config, probes())
    assert report["ok"] is True, report["problems"]
    bob = report["certificates"][1]
    assert bob["party"] == "bob" and bob["days_left"] == 9
    assert report["warnings"] == [
        f"certificate of bob: expires {bob['not_after']} (9 days left); renew it and re-render "
        "every party's federation file before then"]
    assert [row["days_left"] for row in report["certificates"]] == [364, 9, 364]


def test_an_expired_certificate_is_a_problem(
        tmp_path: Path, federation_data: dict[str, Any], certificates: Certs) -> None:
    config, _ = tls_node(tmp_path, federation_data, certificates)
    federation_data["parties"][2]["certificate"] = make_certificate("carol", "10.89.0.4",
                                                                    days=-2.5)[0]
    config.federation_file.write_text(json.dumps(federation_data))
    report = node_status(config, probes())
    assert report["ok"] is False
    carol = report["certificates"][2]
    assert carol["days_left"] == -3  # whole days, rounded down
    assert report["problems"] == [
        f"certificate of carol: expired {carol['not_after']}; TLS links with carol fail until "
        "it has a new certificate and every party's federation file carries it"]
    assert report["warnings"] == []


def test_a_certificate_that_does_not_parse_is_a_problem(
        tmp_path: Path, federation_data: dict[str, Any], certificates: Certs) -> None:
    config, _ = tls_node(tmp_path, federation_data, certificates)
    federation_data["parties"][1]["certificate"] = ("-----BEGIN CERTIFICATE-----\nMIIBAAAA\n"
                                                    "-----END CERTIFICATE-----\n")
    config.federation_file.write_text(json.dumps(federation_data))
    report = node_status(config, probes())
    assert report["ok"] is False
    assert "error" in report["certificates"][1]
    assert [p for p in report["problems"] if p.startswith("certificate of bob: cannot be parsed "
                                                          f"from {config.federation_file}")]

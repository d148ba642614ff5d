"""The arguments SecretFlow is called with, built without SecretFlow."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import full_spec, job_context, tls_node
from sfnode.config import NodeConfig
from sfnode.federation import Federation
from sfnode.sfargs import LINK_SEND_TIMEOUT_MS, sf_init_kwargs, spu_cluster_def, spu_link_desc


def test_sf_init_is_production_mode(config: NodeConfig, federation: Federation,
                                    tmp_path: Path) -> None:
    ctx = job_context(config, federation, full_spec(slot=1), tmp_path)
    kwargs = sf_init_kwargs(ctx)
    assert "parties" not in kwargs  # that would be simulation mode
    assert kwargs["address"] == "10.89.0.2:61379"
    assert kwargs["job_name"] == "ping-0001"
    assert kwargs["enable_waiting_for_other_parties_ready"] is True
    assert kwargs["cluster_config"] == {
        "parties": {"alice": {"address": "10.89.0.2:20001", "listen_addr": "0.0.0.0:20001"},
                    "bob": {"address": "10.89.0.3:20001", "listen_addr": "0.0.0.0:20001"}},
        "self_party": "alice"}
    # this party's tracebacks stay here
    assert kwargs["cross_silo_comm_options"]["expose_error_trace"] is False
    assert kwargs["cross_silo_comm_options"]["use_global_proxy"] is False
    assert "tls_config" not in kwargs  # this node runs without TLS


def test_spu_nodes_use_listen_address(config: NodeConfig, federation: Federation,
                                      tmp_path: Path) -> None:
    ctx = job_context(config, federation, full_spec(slot=2), tmp_path)
    cluster = spu_cluster_def(ctx, "CHEETAH")
    assert cluster["nodes"][1] == {"party": "bob", "address": "10.89.0.3:21002",
                                   "listen_address": "0.0.0.0:21002"}
    assert cluster["runtime_config"] == {"protocol": "CHEETAH", "field": "FM128"}
    assert all("tls_opts" not in node for node in cluster["nodes"])  # no TLS on this node


Certs = dict[str, tuple[str, str]]


def test_sf_init_with_tls_uses_this_nodes_files_and_the_jobs_trust_bundle(
        tmp_path: Path, federation_data: dict[str, Any], certificates: Certs) -> None:
    config, fed = tls_node(tmp_path, federation_data, certificates)
    workdir = tmp_path / "jobs" / "ping-0001"
    kwargs = sf_init_kwargs(job_context(config, fed, full_spec(), workdir))
    assert kwargs["tls_config"] == {"cert": str(tmp_path / "tls" / "node.crt"),
                                    "key": str(tmp_path / "tls" / "node.key"),
                                    "ca_cert": str(workdir / "peers.pem")}
    assert kwargs["cross_silo_comm_options"]["expose_error_trace"] is False


def test_spu_tls_opts_only_on_this_partys_own_node(
        tmp_path: Path, federation_data: dict[str, Any], certificates: Certs) -> None:
    config, fed = tls_node(tmp_path, federation_data, certificates)
    workdir = tmp_path / "jobs" / "spu-sum-0001"
    ctx = job_context(config, fed, full_spec(parties=("carol", "alice", "bob")), workdir)
    nodes = spu_cluster_def(ctx, "SEMI2K")["nodes"]
    assert [n["party"] for n in nodes] == ["carol", "alice", "bob"]
    ssl = {"certificate_path": str(tmp_path / "tls" / "node.crt"),
           "private_key_path": str(tmp_path / "tls" / "node.key"),
           "ca_file_path": str(workdir / "peers.pem"), "verify_depth": 1}
    assert nodes[1]["tls_opts"] == {"server_ssl_opts": ssl, "client_ssl_opts": ssl}
    assert nodes[1]["listen_address"] == "0.0.0.0:21000"
    assert "tls_opts" not in nodes[0] and "tls_opts" not in nodes[2]


def test_rayfed_unpickles_only_the_allowed_types(config: NodeConfig, federation: Federation,
                                                 tmp_path: Path) -> None:
    from sfnode.sfargs import SERIALIZING_ALLOWED

    ctx = job_context(config, federation, full_spec(), tmp_path)
    allowed = sf_init_kwargs(ctx)["cross_silo_comm_options"]["serializing_allowed_list"]
    assert allowed == SERIALIZING_ALLOWED
    assert "*" not in allowed and all("*" not in names for names in allowed.values())
    allowed["numpy"].append("*")  # rayfed rewrites what it gets; the constant stays
    assert "*" not in SERIALIZING_ALLOWED["numpy"]


def test_spu_links_wait_for_a_peer_until_the_deadline_but_resend_within_seconds(
        config: NodeConfig, federation: Federation, tmp_path: Path) -> None:
    """A slow peer's next message is awaited as long as the job may run; a request that
    got no answer (brpc with TLS can hold its last bytes back) is sent again after
    LINK_SEND_TIMEOUT_MS, not after the deadline."""
    ctx = job_context(config, federation, full_spec(deadline_seconds=900), tmp_path)
    desc = spu_link_desc(ctx)
    assert desc["recv_timeout_ms"] == 900_000
    assert desc["http_timeout_ms"] == LINK_SEND_TIMEOUT_MS <= 20_000

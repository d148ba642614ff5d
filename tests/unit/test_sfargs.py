"""The arguments SecretFlow is called with, built without SecretFlow."""
from __future__ import annotations

from pathlib import Path

from conftest import full_spec, job_context
from sfnode.config import NodeConfig
from sfnode.federation import Federation
from sfnode.sfargs import sf_init_kwargs, spu_cluster_def


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


def test_spu_nodes_use_listen_address(config: NodeConfig, federation: Federation,
                                      tmp_path: Path) -> None:
    ctx = job_context(config, federation, full_spec(slot=2), tmp_path)
    cluster = spu_cluster_def(ctx, "CHEETAH")
    assert cluster["nodes"][1] == {"party": "bob", "address": "10.89.0.3:21002",
                                   "listen_address": "0.0.0.0:21002"}
    assert cluster["runtime_config"] == {"protocol": "CHEETAH", "field": "FM128"}

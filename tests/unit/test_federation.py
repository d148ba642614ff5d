from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import tls_node
from sfnode.config import NodeConfig, PortRange
from sfnode.federation import FederationError, check_node, load_federation, parse_federation


def test_load_federation_file(tmp_path: Path, federation_data: dict[str, Any]) -> None:
    path = tmp_path / "federation.json"
    path.write_text(json.dumps(federation_data))
    fed = load_federation(path)
    assert fed.ids == ["alice", "bob", "carol"]
    bob = fed.party("bob")
    assert bob.ip == "10.89.0.3"
    assert bob.rayfed_ports == PortRange(20000, 20031)
    assert "carol" in fed and "dave" not in fed


def test_slot_to_ports(federation_data: dict[str, Any]) -> None:
    fed = parse_federation(federation_data)
    assert fed.party("alice").ports(0) == (20000, 21000)
    assert fed.party("alice").ports(31) == (20031, 21031)
    assert fed.party("carol").ports(2) == (30002, 31002)
    assert fed.party("carol").slots == 4
    with pytest.raises(IndexError, match="slot 4 is outside 0..3"):
        fed.party("carol").rayfed_port(4)


def test_slots_bounded_by_shortest_range(federation_data: dict[str, Any]) -> None:
    federation_data["parties"][1]["spu_ports"] = [21000, 21009]
    fed = parse_federation(federation_data)
    assert fed.party("bob").slots == 10
    assert fed.slots(["alice", "bob"]) == 10
    assert fed.slots(["alice", "bob", "carol"]) == 4


def test_every_problem_named(federation_data: dict[str, Any]) -> None:
    parties = federation_data["parties"]
    parties[1]["id"] = "alice"
    parties[2]["ip"] = "10.89.0"
    parties[2]["rayfed_ports"] = [30010, 30000]
    federation_data["version"] = 2
    with pytest.raises(FederationError) as err:
        parse_federation(federation_data, "fed.json")
    text = str(err.value)
    assert "(fed.json)" in text
    assert "version: 2 is not supported; expected 1" in text
    assert "parties[1].id: 'alice' appears twice" in text
    assert "parties[2].ip: '10.89.0' is not valid; expected an IP address" in text
    assert "parties[2].rayfed_ports: [30010, 30000] is not valid" in text


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(FederationError, match="cannot read"):
        load_federation(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(FederationError, match="not valid JSON"):
        load_federation(bad)


def test_check_node_against_env(config: NodeConfig, federation_data: dict[str, Any]) -> None:
    assert check_node(config, parse_federation(federation_data)) == []
    federation_data["parties"][0]["ip"] = "10.89.0.9"
    problems = check_node(config, parse_federation(federation_data))
    assert problems == [f"NODE_IP='10.89.0.2' differs from {config.federation_file} "
                        "('10.89.0.9' for party alice)"]


# --- certificates (mutual TLS) -------------------------------------------------------------


def test_a_file_without_certificates_round_trips_unchanged(federation_data: dict[str, Any]) -> None:
    fed = parse_federation(federation_data)
    assert [p.certificate for p in fed] == [None, None, None]
    assert fed.to_dict() == federation_data  # no "certificate": null added
    federation_data["parties"][1]["certificate"] = None
    assert parse_federation(federation_data).party("bob").tls is False


def test_a_certificate_is_kept_and_written_back(
        federation_data: dict[str, Any], certificates: dict[str, tuple[str, str]]) -> None:
    federation_data["parties"][1]["certificate"] = certificates["bob"][0]
    fed = parse_federation(federation_data)
    assert fed.party("bob").certificate == certificates["bob"][0]
    assert fed.party("bob").tls is True and fed.party("alice").tls is False
    assert fed.to_dict() == federation_data
    assert "certificate" not in fed.to_dict()["parties"][0]


def test_every_bad_certificate_is_named(
        federation_data: dict[str, Any], certificates: dict[str, tuple[str, str]]) -> None:
    parties = federation_data["parties"]
    parties[0]["certificate"] = certificates["alice"][0] + certificates["bob"][0]
    parties[1]["certificate"] = certificates["bob"][1]  # the private key, not the certificate
    parties[2]["certificate"] = 42
    with pytest.raises(FederationError) as err:
        parse_federation(federation_data, "fed.json")
    assert [r.field for r in err.value.records] == [
        "parties[0].certificate", "parties[1].certificate", "parties[2].certificate"]
    first, second, third = err.value.problems
    expected = ("expected one PEM certificate (-----BEGIN CERTIFICATE----- ... "
                "-----END CERTIFICATE-----) or null")
    assert first.startswith("parties[0].certificate: '-----BEGIN CERTIFICATE-----")
    assert first.endswith(f"holds 2 certificates; {expected}")
    assert second.startswith("parties[1].certificate: '-----BEGIN PRIVATE KEY-----")
    assert second.endswith(f"is not a PEM certificate; {expected}")
    assert third == f"parties[2].certificate: 42 is not a string; {expected}"


@pytest.mark.parametrize("value", ["", "not a certificate",
                                   "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----",
                                   "-----BEGIN CERTIFICATE-----\nMIIB\n",
                                   "junk\n-----BEGIN CERTIFICATE-----\nMIIB\n"
                                   "-----END CERTIFICATE-----"])
def test_what_is_not_one_pem_block_is_refused(federation_data: dict[str, Any], value: str) -> None:
    federation_data["parties"][2]["certificate"] = value
    with pytest.raises(FederationError, match=r"parties\[2\]\.certificate: .* is not a PEM"):
        parse_federation(federation_data)


def test_surrounding_whitespace_is_allowed(
        federation_data: dict[str, Any], certificates: dict[str, tuple[str, str]]) -> None:
    federation_data["parties"][2]["certificate"] = "\n  " + certificates["carol"][0] + "\n\n"
    assert parse_federation(federation_data).party("carol").tls is True


def test_the_trust_bundle_holds_the_named_parties_certificates(
        federation_data: dict[str, Any], certificates: dict[str, tuple[str, str]]) -> None:
    for entry in federation_data["parties"][:2]:
        entry["certificate"] = certificates[entry["id"]][0]
    fed = parse_federation(federation_data)
    assert fed.trust_bundle(["bob"]) == certificates["bob"][0]
    assert fed.trust_bundle(["alice", "bob"]) == certificates["alice"][0] + certificates["bob"][0]
    with pytest.raises(ValueError, match="party 'carol' has no certificate"):
        fed.trust_bundle(["bob", "carol"])


def test_a_ca_signed_party_is_trusted_through_its_ca_once_per_bundle(
        federation_data: dict[str, Any], certificates: dict[str, tuple[str, str]]) -> None:
    # certificates[...] stand in for a CA's and its parties' certificates: the bundle
    # carries the CA for bob and carol (once), alice's own certificate for alice
    ca = certificates["alice"][0]
    for entry in federation_data["parties"]:
        entry["certificate"] = certificates[entry["id"]][0]
    for entry in federation_data["parties"][1:]:
        entry["ca_certificate"] = ca
    fed = parse_federation(federation_data)
    assert fed.party("bob").trust_anchor == ca and fed.party("alice").trust_anchor == certificates["alice"][0]
    assert fed.trust_bundle(["bob", "carol"]) == ca
    assert fed.to_dict()["parties"][1]["ca_certificate"] == ca
    assert parse_federation(fed.to_dict()) == fed


def test_a_ca_certificate_needs_a_certificate_beside_it(
        federation_data: dict[str, Any], certificates: dict[str, tuple[str, str]]) -> None:
    federation_data["parties"][1]["ca_certificate"] = certificates["alice"][0]
    federation_data["parties"][2]["certificate"] = certificates["carol"][0]
    federation_data["parties"][2]["ca_certificate"] = "not a certificate"
    with pytest.raises(FederationError) as err:
        parse_federation(federation_data)
    text = str(err.value)
    assert "is set but the party has no certificate; expected both (a CA-signed party) or neither" in text, text
    assert "parties[1].ca_certificate: '-----BEGIN CERTIFICATE-----" in text, text
    assert "parties[2].ca_certificate: 'not a certificate' is not a PEM certificate" in text, text


def test_check_node_agrees_with_the_own_certificate(
        tmp_path: Path, federation_data: dict[str, Any],
        certificates: dict[str, tuple[str, str]]) -> None:
    config, fed = tls_node(tmp_path, federation_data, certificates)
    assert check_node(config, fed) == []
    # the federation file may carry the PEM with other surrounding whitespace
    federation_data["parties"][0]["certificate"] = "\n" + certificates["alice"][0].strip()
    assert check_node(config, parse_federation(federation_data)) == []


def test_check_node_names_another_certificate(
        tmp_path: Path, federation_data: dict[str, Any],
        certificates: dict[str, tuple[str, str]]) -> None:
    config, _ = tls_node(tmp_path, federation_data, certificates)
    federation_data["parties"][0]["certificate"] = certificates["bob"][0]
    assert check_node(config, parse_federation(federation_data)) == [
        f"TLS_CERT='{config.tls_cert}' holds another certificate than party alice's entry in "
        f"{config.federation_file}; expected the same certificate (re-render the federation "
        "file after this node's certificate changed)"]


def test_check_node_names_an_unreadable_certificate_file(
        tmp_path: Path, federation_data: dict[str, Any],
        certificates: dict[str, tuple[str, str]]) -> None:
    config, fed = tls_node(tmp_path, federation_data, certificates)
    assert config.tls_cert is not None
    config.tls_cert.unlink()
    problems = check_node(config, fed)
    assert problems == [f"TLS_CERT='{config.tls_cert}' cannot be read (No such file or "
                        "directory); expected a PEM file readable by this user holding party "
                        "alice's certificate"]


def test_check_node_tls_on_without_own_certificate(
        tmp_path: Path, federation_data: dict[str, Any],
        certificates: dict[str, tuple[str, str]]) -> None:
    config, fed = tls_node(tmp_path, federation_data, certificates,
                           with_certificate=("bob", "carol"))
    assert check_node(config, fed) == [
        f"TLS_CERT='{config.tls_cert}' is set but party alice has no certificate in "
        f"{config.federation_file}; expected party alice's entry to carry this certificate "
        "(re-render the federation file), or TLS_CERT and TLS_KEY empty to run without TLS"]


def test_check_node_tls_off_with_own_certificate(
        tmp_path: Path, federation_data: dict[str, Any],
        certificates: dict[str, tuple[str, str]]) -> None:
    config, fed = tls_node(tmp_path, federation_data, certificates, tls=False)
    assert check_node(config, fed) == [
        f"TLS_CERT is empty but party alice has a certificate in {config.federation_file}, so "
        "its peers require TLS of it; expected TLS_CERT and TLS_KEY set to this node's "
        "certificate and key, or no certificate in party alice's entry"]
    # without TLS anywhere, nothing to agree on
    config, fed = tls_node(tmp_path, federation_data | {"parties": [
        {k: v for k, v in p.items() if k != "certificate"} for p in federation_data["parties"]]},
        certificates, with_certificate=(), tls=False)
    assert check_node(config, fed) == []

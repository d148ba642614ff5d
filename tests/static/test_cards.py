"""Party cards (what an organisation publishes for its peers) are checked by
site.yml's preflight like hosts, and their certificates before any host
changes: each problem names the card, the party and what is wrong.

Runs `ansible-playbook site.yml --tags preflight` against this machine (see
test_preflight.py), and the card filters directly.
"""
from __future__ import annotations

import datetime
import importlib.util
import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from test_preflight import ROOT, preflight_parties

SECRET = {"redis_password": "a" * 32}


def _filters(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "roles" / "node" / "filter_plugins" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cards_filters = _filters("cards")


def certificate(party: str, ip: str, *, days: int = 30, ca: bool = False, san: str | None = None,
                server_and_client: bool = True) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, party)])
    now = datetime.datetime.now(datetime.timezone.utc)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] + ([ExtendedKeyUsageOID.CLIENT_AUTH] if server_and_client else [])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=400 if days < 0 else 0, hours=1))
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(san or ip))]),
                              critical=False)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage(usages), critical=False))
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def card(party: str, ip: str, rayfed: int = 20000, spu: int = 21000, **cert: Any) -> dict[str, Any]:
    return {"card_version": 1, "id": party, "ip": ip, "rayfed_ports": {"start": rayfed, "end": rayfed + 31},
            "spu_ports": {"start": spu, "end": spu + 31}, "certificate": certificate(party, ip, **cert)}


def write_cards(tmp_path: Path, cards: dict[str, Any]) -> list[str]:
    paths = []
    for name, content in cards.items():
        path = tmp_path / f"{name}.yml"
        if content is not None:
            path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
        paths.append(str(path))
    return paths


def test_a_good_card_joins_the_federation(tmp_path: Path) -> None:
    paths = write_cards(tmp_path, {"bob": card("bob", "192.0.2.11")})
    result = preflight_parties(tmp_path, {"alice": {**SECRET, "node_peer_cards": paths}})
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def test_bad_cards_are_refused_naming_the_card_and_the_party(tmp_path: Path) -> None:
    cards = {
        "expired": card("bob", "192.0.2.11", days=-1),
        "wrong-san": card("carol", "192.0.2.12", san="192.0.2.99"),
        "ca": card("dave", "192.0.2.13", ca=True),
        "server-only": card("erin", "192.0.2.14", server_and_client=False),
        "no-ip": {**card("frank", "192.0.2.15"), "ip": None},
        "missing": None,
        "not-yaml": "id: [unclosed",
        # a card for a party the inventory manages itself
        "clash": card("alice", "192.0.2.16"),
        "bad-channel": {**card("gina", "192.0.2.17"), "channel_port": "twenty"},
        "channel-no-tls": {**card("hank", "192.0.2.18"), "certificate": None, "channel_port": 23443},
    }
    paths = dict(zip(cards, write_cards(tmp_path, cards)))
    result = preflight_parties(tmp_path, {"alice": {**SECRET, "node_peer_cards": list(paths.values())}})
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output[-3000:]
    expected = {
        "expired": "(party bob): certificate expired on",
        "wrong-san": "(party carol): certificate names 192.0.2.99 (subjectAltName), not the party's ip 192.0.2.12",
        "ca": "(party dave): certificate is a CA certificate (CA:TRUE)",
        "server-only": "(party erin): certificate is not for clientAuth",
        "no-ip": "(party frank): ip missing",
        "missing": ": cannot be read",
        "not-yaml": ": is not YAML",
        "bad-channel": "(party gina): channel_port is 'twenty'; expected a port (1-65535)",
        "channel-no-tls": "(party hank): channel_port is 23443 but certificate is null",
    }
    for name, fragment in expected.items():
        joined = f"party card {paths[name]}{'' if fragment.startswith(':') else ' '}{fragment}"
        assert joined in output, (name, output[-4000:])
    assert f"node_id 'alice' is used by hosts alice, card {paths['clash']}" in output, output[-4000:]
    assert "nothing was changed on any host" in output


def test_a_party_card_reads_back_as_written() -> None:
    pem = certificate("bob", "192.0.2.11")
    party = {"id": "bob", "ip": "192.0.2.11", "node_rayfed_ports": {"start": 20000, "end": 20031},
             "node_spu_ports": {"start": 21000, "end": 21031}}
    written = cards_filters.party_card(party, pem)
    assert written["certificate"] == pem and written["rayfed_ports"] == {"start": 20000, "end": 20031}
    assert cards_filters.certificate_problems(written["certificate"], written["ip"]) == []
    assert written["channel_port"] is None  # a party without a job channel
    assert cards_filters.party_card({**party, "channel_port": "23443"}, pem)["channel_port"] == 23443
    assert cards_filters.party_card({**party, "channel_port": "23443"}, None)["channel_port"] is None  # no TLS


def test_the_federation_file_carries_each_partys_certificate(tmp_path: Path) -> None:
    pem = certificate("bob", "192.0.2.11")
    (tmp_path / "bob.yml").write_text(yaml.safe_dump(card("bob", "192.0.2.11") | {"certificate": pem}))
    hosts = [{"__node_party": {"host": "alice", "id": "alice", "ip": "192.0.2.10",
                               "node_rayfed_ports": {"start": 20000, "end": 20031},
                               "node_spu_ports": {"start": 21000, "end": 21031}},
              "__node_certificate": None}]
    parties = cards_filters.federation_parties(hosts, cards_filters.party_cards([str(tmp_path / "bob.yml")]))
    document = _filters("federation").federation_document(parties)
    by_id = {p["id"]: p for p in document["parties"]}
    assert "certificate" not in by_id["alice"]  # no TLS there: no certificate field
    assert by_id["bob"]["certificate"] == pem
    assert "channel_port" not in by_id["bob"]  # its card names no channel
    (tmp_path / "bob.yml").write_text(yaml.safe_dump(card("bob", "192.0.2.11") | {"certificate": pem,
                                                                                     "channel_port": 23443}))
    parties = cards_filters.federation_parties(hosts, cards_filters.party_cards([str(tmp_path / "bob.yml")]))
    by_id = {p["id"]: p for p in _filters("federation").federation_document(parties)["parties"]}
    assert by_id["bob"]["channel_port"] == 23443


def test_a_card_clashing_with_a_host_is_named_and_a_failed_host_is_left_out(tmp_path: Path) -> None:
    # the verdict and the firewall both read the parties through federation_parties
    (tmp_path / "bob.yml").write_text(yaml.safe_dump(card("bob", "192.0.2.10")))
    hosts = [{"__node_party": {"host": "alice", "id": "alice", "ip": "192.0.2.10",
                               "node_rayfed_ports": {"start": 20000, "end": 20031},
                               "node_spu_ports": {"start": 21000, "end": 21031}}},
             {"__common_problems": ["party carol: node_ip is not set"]}]
    parties = cards_filters.federation_parties(hosts, cards_filters.party_cards([str(tmp_path / "bob.yml")]))
    assert [p["id"] for p in parties] == ["alice", "bob"]
    problems = _filters("federation").federation_problems(parties)
    assert any("alice" in p and "bob" in p for p in problems), problems


@pytest.mark.parametrize("days, expired", [(1, False), (-1, True)])
def test_an_expired_certificate_is_named(days: int, expired: bool) -> None:
    problems = cards_filters.certificate_problems(certificate("bob", "192.0.2.11", days=days), "192.0.2.11")
    assert any("expired" in p for p in problems) is expired


# An organisation's CA, and certificates it signs (the CA flow: node_tls_ca_certificate).
def make_ca(name: str = "Org CA", *, days: int = 3650, is_ca: bool = True) -> tuple[Any, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=400 if days < 0 else 0, hours=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=is_ca,
                                         crl_sign=is_ca, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.PEM).decode()


def signed(ca: tuple[Any, str], party: str, ip: str, *, public_key: Any = None, days: int = 90) -> str:
    """A party certificate the CA signed, for ``public_key`` (default: a new key)."""
    ca_key, ca_pem = ca
    issuer = x509.load_pem_x509_certificate(ca_pem.encode()).subject
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, party)])).issuer_name(issuer)
            .public_key(public_key or ec.generate_private_key(ec.SECP256R1()).public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_a_card_signed_by_its_ca_joins_and_the_federation_file_carries_the_ca(tmp_path: Path) -> None:
    ca = make_ca()
    good = {**card("bob", "192.0.2.11"), "certificate": signed(ca, "bob", "192.0.2.11"), "ca_certificate": ca[1]}
    (tmp_path / "bob.yml").write_text(yaml.safe_dump(good))
    [party] = cards_filters.party_cards([str(tmp_path / "bob.yml")])
    assert party["problems"] == [] and party["ca_certificate"] == ca[1]
    document = _filters("federation").federation_document(cards_filters.federation_parties([], [party]))
    assert document["parties"][0]["ca_certificate"] == ca[1]
    result = preflight_parties(tmp_path, {"alice": {**SECRET, "node_peer_cards": [str(tmp_path / "bob.yml")]}})
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def test_a_cards_ca_must_have_signed_its_certificate_and_be_a_ca() -> None:
    ca, other = make_ca(), make_ca("Someone else's CA")
    ip = "192.0.2.11"
    problems = cards_filters.certificate_problems(signed(other, "bob", ip), ip, ca=ca[1])
    assert problems == ["certificate (CN=bob, issued by CN=Someone else's CA) is not signed by ca_certificate "
                        "(CN=Org CA); expected the party's certificate that CA signed"]
    not_ca = make_ca("Not a CA", is_ca=False)
    problems = cards_filters.certificate_problems(signed(not_ca, "bob", ip), ip, ca=not_ca[1])
    assert any("is not a CA certificate" in p for p in problems), problems
    expired = make_ca("Old CA", days=-1)
    assert any("ca_certificate (CN=Old CA) expired on" in p for p in
               cards_filters.certificate_problems(signed(expired, "bob", ip), ip, ca=expired[1]))
    # a self-signed party certificate is not a CA either
    assert cards_filters.ca_certificate_problems(certificate("bob", ip))[0].startswith(
        "ca_certificate (CN=bob) is not a CA certificate")


def test_when_a_node_needs_a_new_certificate() -> None:
    ip, ca = "192.0.2.11", make_ca()
    state = cards_filters.tls_certificate_state
    assert state("", ip, 30) == {"usable": False, "ca_signed": False, "due": "there is no certificate yet"}
    own = certificate("bob", ip, days=90)
    assert state(own, ip, 30) == {"usable": True, "ca_signed": False, "due": ""}
    assert state(own, ip, 30, ca[1])["due"] == "the certificate is not signed by node_tls_ca_certificate"
    by_ca = signed(ca, "bob", ip)
    assert state(by_ca, ip, 30, ca[1]) == {"usable": True, "ca_signed": True, "due": ""}
    assert state(by_ca, ip, 30)["due"] == "the certificate is not self-signed (node_tls_ca_certificate is not set)"
    assert state(by_ca, ip, 100, ca[1])["due"].endswith("within 100 days")
    moved = state(by_ca, "192.0.2.99", 30, ca[1])
    assert moved == {"usable": False, "ca_signed": True,
                     "due": "the certificate names 192.0.2.11, not 192.0.2.99"}


def test_a_certificate_from_the_ca_is_installed_only_for_the_nodes_own_request() -> None:
    from cryptography.x509 import CertificateSigningRequestBuilder

    ip, ca = "192.0.2.11", make_ca()
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bob")]))
           .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())
    check = cards_filters.signed_certificate_problems
    assert check(signed(ca, "bob", ip, public_key=key.public_key()), ip, ca[1], csr) == []
    assert check(signed(ca, "bob", ip), ip, ca[1], csr) == [
        "certificate is for another key than the node's current request (an older request?); expected the "
        "certificate the CA signed for this request"]
    wrong_ip = check(signed(ca, "bob", "192.0.2.12", public_key=key.public_key()), ip, ca[1], csr)
    assert wrong_ip and "not the party's ip 192.0.2.11" in wrong_ip[0]

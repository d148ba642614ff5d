"""Party cards: what a party publishes to the organisations it works with.

A card is a YAML file: ``card_version``, ``id``, ``ip``, ``rayfed_ports`` and
``spu_ports`` ({start, end}) and ``certificate`` (PEM, or null for a party
without TLS). An inventory lists the cards of the parties it does not manage
in node_peer_cards; site.yml never connects to them.

- party_cards: read and check cards (paths on the controller): one entry per
  card, shaped like the fact __node_party (so the federation checks, the
  federation file and the firewall take cards and hosts alike), with the
  card's own problems, each naming the card, the party and what is wrong.
- certificate_problems: what is wrong with a party's certificate.
- party_card: the card of a managed party (its __node_party and certificate).
- federation_parties: every party of the federation file, hosts and cards.
"""
from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from typing import Any

import yaml

CARD_VERSION = 1
PEM_BEGIN = "-----BEGIN CERTIFICATE-----"
RANGE_KEYS = {"rayfed_ports": "node_rayfed_ports", "spu_ports": "node_spu_ports"}


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def certificate_problems(pem: Any, ip: Any, now: datetime.datetime | None = None) -> list[str]:
    """Why ``pem`` cannot be a party's TLS certificate for ``ip`` (empty: it can)."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    if not isinstance(pem, str) or pem.count(PEM_BEGIN) != 1:
        return ["certificate is not one PEM certificate (-----BEGIN CERTIFICATE----- ...); expected the "
                "party's certificate as its node wrote it"]
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        return [f"certificate cannot be read ({exc}); expected the party's PEM certificate"]
    now = now or _now()
    problems = []
    ends = cert.not_valid_after_utc
    if ends <= now:
        problems.append(f"certificate expired on {ends:%Y-%m-%d %H:%M} UTC; expected a current one (ask the party "
                        "for its renewed card)")
    if cert.not_valid_before_utc > now + datetime.timedelta(hours=1):
        problems.append(f"certificate is valid only from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC; expected "
                        "one valid now")
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        addresses = [str(a) for a in names.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        addresses = []
    try:
        wanted = str(ipaddress.ip_address(str(ip)))
    except ValueError:
        wanted = str(ip)
    if wanted not in addresses:
        shown = ", ".join(addresses) or "no IP address"
        problems.append(f"certificate names {shown} (subjectAltName), not the party's ip {wanted}; expected a "
                        "certificate for the address its peers dial")
    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            problems.append("certificate is a CA certificate (CA:TRUE): it could vouch for other parties; expected "
                            "a party certificate (CA:FALSE)")
    except x509.ExtensionNotFound:
        pass
    try:
        usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        missing = [name for oid, name in ((ExtendedKeyUsageOID.SERVER_AUTH, "serverAuth"),
                                          (ExtendedKeyUsageOID.CLIENT_AUTH, "clientAuth")) if oid not in usages]
        if missing:
            problems.append(f"certificate is not for {' and '.join(missing)} (extendedKeyUsage); expected one usable "
                            "as TLS server and client")
    except x509.ExtensionNotFound:
        pass
    try:
        if not cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature:
            problems.append("certificate does not allow digitalSignature (keyUsage); expected one usable for TLS")
    except x509.ExtensionNotFound:
        pass
    return problems


def _range(card: dict[str, Any], key: str) -> Any:
    value = card.get(key)
    return dict(value) if isinstance(value, dict) else value


def _read_card(path: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        return None, f"party card {path}: cannot be read ({exc.strerror or exc}); expected a card file on the controller"
    except yaml.YAMLError as exc:
        return None, f"party card {path}: is not YAML ({exc}); expected a card as site.yml writes it"
    if not isinstance(data, dict):
        return None, f"party card {path}: is {type(data).__name__}; expected a mapping (id, ip, ranges, certificate)"
    return data, None


def party_cards(paths: Any, now: datetime.datetime | None = None) -> list[dict[str, Any]]:
    """Each card as a party (host ``card PATH``) with ``problems``."""
    parties = []
    for path in paths or []:
        data, problem = _read_card(str(path))
        if data is None:
            parties.append({"host": f"card {path}", "id": None, "problems": [problem]})
            continue
        party = {
            "host": f"card {path}",
            "id": data.get("id"),
            "ip": data.get("ip"),
            **{name: _range(data, key) for key, name in RANGE_KEYS.items()},
            "certificate": data.get("certificate"),
        }
        where = f"party card {path} (party {data.get('id')})"
        problems = []
        if data.get("card_version") != CARD_VERSION:
            problems.append(f"{where}: card_version is {data.get('card_version')!r}; expected {CARD_VERSION}")
        missing = [key for key in ("id", "ip", *RANGE_KEYS) if data.get(key) in (None, "")]
        if missing:
            problems.append(f"{where}: {', '.join(missing)} missing; expected id, ip, rayfed_ports, spu_ports and "
                            "certificate")
        if party["certificate"] is not None:
            problems += [f"{where}: {p}" for p in certificate_problems(party["certificate"], party["ip"], now)]
        party["problems"] = problems
        parties.append(party)
    return parties


def party_card(party: dict[str, Any], certificate: Any) -> dict[str, Any]:
    """The card a managed party publishes (see the module's docstring)."""
    return {
        "card_version": CARD_VERSION,
        "id": party["id"],
        "ip": party["ip"],
        **{key: {"start": int(party[name]["start"]), "end": int(party[name]["end"])} for key, name in RANGE_KEYS.items()},
        "certificate": certificate or None,
    }


def federation_parties(hosts: Any, cards: Any = ()) -> list[dict[str, Any]]:
    """Every party: each managed host's __node_party with its certificate, then the sound cards.

    A host whose preflight did not get as far as describing its party is left out (its problems
    are reported on their own)."""
    parties = []
    for host in hosts:
        if not host.get("__node_party"):
            continue
        party = dict(host["__node_party"])
        party["certificate"] = host.get("__node_certificate") or None
        parties.append(party)
    parties += [dict(card) for card in cards or () if card.get("id") and not card.get("problems")]
    return parties


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"party_cards": party_cards, "party_card": party_card, "certificate_problems": certificate_problems,
                "federation_parties": federation_parties}

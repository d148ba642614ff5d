"""Party cards: what a party publishes to the organisations it works with.

A card is a YAML file: ``card_version``, ``id``, ``ip``, ``rayfed_ports`` and
``spu_ports`` ({start, end}), ``certificate`` (PEM, or null for a party
without TLS) and ``ca_certificate`` (the PEM certificate of the CA that signed
it, or null or absent for a self-signed one) and ``channel_port`` (the port of
its job channel on ``ip``, or null or absent when it has none). An inventory lists the cards of the parties it does not manage
in node_peer_cards; site.yml never connects to them.

- party_cards: read and check cards (paths on the controller): one entry per
  card, shaped like the fact __node_party (so the federation checks, the
  federation file and the firewall take cards and hosts alike), with the
  card's own problems, each naming the card, the party and what is wrong.
- certificate_problems: what is wrong with a party's certificate (and its CA).
- ca_certificate_problems: what is wrong with a CA certificate a party names.
- tls_certificate_state: whether a node's installed certificate is usable and
  whether a new one is due.
- signed_certificate_problems: whether a certificate the CA signed fits the
  node's request (same public key) and the party.
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


def _load(pem: Any, what: str = "certificate") -> tuple[Any, str | None]:
    """(the certificate, None) or (None, why it cannot be read)."""
    from cryptography import x509

    if not isinstance(pem, str) or pem.count(PEM_BEGIN) != 1:
        return None, (f"{what} is not one PEM certificate (-----BEGIN CERTIFICATE----- ...); expected the "
                      f"party's {what} as it was issued")
    try:
        return x509.load_pem_x509_certificate(pem.encode()), None
    except ValueError as exc:
        return None, f"{what} cannot be read ({exc}); expected a PEM certificate"


def _subject(cert: Any) -> str:
    return cert.subject.rfc4514_string() or "an empty subject"


def _addresses(cert: Any) -> list[str]:
    """The IP addresses a certificate names (subjectAltName)."""
    from cryptography import x509

    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(a) for a in names.get_values_for_type(x509.IPAddress)]


def _address(ip: Any) -> str:
    """``ip`` as a certificate names it (normalised), or as given when it is no address."""
    try:
        return str(ipaddress.ip_address(str(ip)))
    except ValueError:
        return str(ip)


def _issued_by(cert: Any, ca: Any) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except Exception:  # noqa: BLE001  InvalidSignature, ValueError, TypeError (another key type)
        return False
    return True


def ca_certificate_problems(pem: Any, now: datetime.datetime | None = None) -> list[str]:
    """Why ``pem`` cannot be the CA a party's certificate is signed by (empty: it can)."""
    from cryptography import x509

    ca, problem = _load(pem, "ca_certificate")
    if ca is None:
        return [problem or ""]
    now = now or _now()
    problems = []
    try:
        is_ca = ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        problems.append(f"ca_certificate ({_subject(ca)}) is not a CA certificate (no basicConstraints CA:TRUE); "
                        "expected the certificate of the CA that signs the party's certificate")
    if ca.issuer != ca.subject or not _issued_by(ca, ca):
        problems.append(f"ca_certificate ({_subject(ca)}) is not self-signed; expected the root CA that signs the "
                        "party's certificate directly (peers trust it as the anchor of a chain of two)")
    if ca.not_valid_after_utc <= now:
        problems.append(f"ca_certificate ({_subject(ca)}) expired on {ca.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; "
                        "expected a current one")
    try:
        if not ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign:
            problems.append(f"ca_certificate ({_subject(ca)}) does not allow keyCertSign (keyUsage); expected a CA "
                            "that may sign certificates")
    except x509.ExtensionNotFound:
        pass
    return problems


def certificate_problems(pem: Any, ip: Any, now: datetime.datetime | None = None,
                         ca: Any = None) -> list[str]:
    """Why ``pem`` cannot be a party's TLS certificate for ``ip`` (empty: it can); with ``ca``
    (a PEM CA certificate), also why that CA cannot vouch for it."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    cert, problem = _load(pem)
    if cert is None:
        return [problem or ""]
    now = now or _now()
    problems = []
    if ca is not None:
        ca_problems = ca_certificate_problems(ca, now)
        problems += ca_problems
        ca_cert, _ = _load(ca)
        if ca_cert is not None and not _issued_by(cert, ca_cert):
            problems.append(f"certificate ({_subject(cert)}, issued by {cert.issuer.rfc4514_string()}) is not signed "
                            f"by ca_certificate ({_subject(ca_cert)}); expected the party's certificate that CA "
                            "signed")
    ends = cert.not_valid_after_utc
    if ends <= now:
        problems.append(f"certificate expired on {ends:%Y-%m-%d %H:%M} UTC; expected a current one (ask the party "
                        "for its renewed card)")
    if cert.not_valid_before_utc > now + datetime.timedelta(hours=1):
        problems.append(f"certificate is valid only from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC; expected "
                        "one valid now")
    addresses, wanted = _addresses(cert), _address(ip)
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


def tls_certificate_state(pem: Any, ip: Any, renew_days: Any, ca: Any = None,
                          now: datetime.datetime | None = None) -> dict[str, Any]:
    """A node's installed certificate (``pem``, empty when none): ``usable`` (current, for
    ``ip``: it may serve until a new one is in place), ``ca_signed`` (signed by ``ca``), and
    ``due``: why a new one is needed (empty: it is not). With ``ca``, a certificate that CA
    did not sign is due; without, one that is not self-signed is."""
    if not pem:
        return {"usable": False, "ca_signed": False, "due": "there is no certificate yet"}
    cert, problem = _load(pem)
    if cert is None:
        return {"usable": False, "ca_signed": False, "due": problem}
    now = now or _now()
    addresses, wanted = _addresses(cert), _address(ip)
    ends = cert.not_valid_after_utc
    usable = ends > now and wanted in addresses
    ca_cert = _load(ca)[0] if ca else None
    ca_signed = ca_cert is not None and _issued_by(cert, ca_cert)
    if ends <= now + datetime.timedelta(days=int(renew_days)):
        due = f"the certificate ends on {ends:%Y-%m-%d %H:%M} UTC, within {int(renew_days)} days"
    elif wanted not in addresses:
        due = f"the certificate names {', '.join(addresses) or 'no IP address'}, not {wanted}"
    elif ca and not ca_signed:
        due = "the certificate is not signed by node_tls_ca_certificate"
    elif not ca and (cert.issuer != cert.subject or not _issued_by(cert, cert)):
        due = "the certificate is not self-signed (node_tls_ca_certificate is not set)"
    else:
        due = ""
    return {"usable": usable, "ca_signed": ca_signed, "due": due}


def signed_certificate_problems(pem: Any, ip: Any, ca: Any, csr: Any,
                                now: datetime.datetime | None = None) -> list[str]:
    """Why ``pem``, returned by the CA for the request ``csr``, cannot be installed (empty: it can)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    problems = certificate_problems(pem, ip, now, ca)
    cert, _ = _load(pem)
    try:
        request = x509.load_pem_x509_csr(str(csr).encode())
    except ValueError as exc:
        return problems + [f"the request cannot be read ({exc})"]
    if cert is not None:
        raw = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        if cert.public_key().public_bytes(*raw) != request.public_key().public_bytes(*raw):
            problems.append("certificate is for another key than the node's current request (an older request?); "
                            "expected the certificate the CA signed for this request")
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
            "ca_certificate": data.get("ca_certificate") or None,
            "channel_port": data.get("channel_port"),
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
            problems += [f"{where}: {p}" for p in certificate_problems(party["certificate"], party["ip"], now,
                                                                       party["ca_certificate"])]
        elif party["ca_certificate"] is not None:
            problems.append(f"{where}: ca_certificate is set but certificate is null; expected both (a CA-signed "
                            "party) or neither (a party without TLS)")
        port = party["channel_port"]
        if port is not None:
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                problems.append(f"{where}: channel_port is {port!r}; expected a port (1-65535), or null for a "
                                "party without a job channel")
            elif party["certificate"] is None:
                problems.append(f"{where}: channel_port is {port} but certificate is null; expected a certificate "
                                "too (the job channel is mutual TLS)")
        party["problems"] = problems
        parties.append(party)
    return parties


def party_card(party: dict[str, Any], certificate: Any, ca_certificate: Any = None) -> dict[str, Any]:
    """The card a managed party publishes (see the module's docstring)."""
    return {
        "card_version": CARD_VERSION,
        "id": party["id"],
        "ip": party["ip"],
        **{key: {"start": int(party[name]["start"]), "end": int(party[name]["end"])} for key, name in RANGE_KEYS.items()},
        "certificate": certificate or None,
        "ca_certificate": (ca_certificate or None) if certificate else None,
        "channel_port": int(party["channel_port"]) if certificate and str(party.get("channel_port")).isdigit() else None,
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
        party["ca_certificate"] = (host.get("__node_ca_certificate") or None) if party["certificate"] else None
        parties.append(party)
    parties += [dict(card) for card in cards or () if card.get("id") and not card.get("problems")]
    return parties


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"party_cards": party_cards, "party_card": party_card, "certificate_problems": certificate_problems,
                "ca_certificate_problems": ca_certificate_problems, "tls_certificate_state": tls_certificate_state,
                "signed_certificate_problems": signed_certificate_problems, "federation_parties": federation_parties}

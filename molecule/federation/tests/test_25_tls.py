"""Mutual TLS between the parties (three_parties: carol is a party of the
federation, but not of the jobs here, so she is the insider who must not get
into other parties' jobs).

A job's ports are open only while the job runs. held_job keeps a two-party
job between alice and bob at its SPU link for as long as a test probes: a
rule on bob drops alice's connections to bob's SPU port of the slot, so both
SPU links keep retrying (they connect once the rule is gone, and the job
finishes with its sum)."""
from __future__ import annotations

import datetime
import ipaddress
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import PARTIES, Jobs, connects, node_ip, psi_spec, unique_job_id, upload_psi_input
from shared import FIREWALL, NODE, wait_for

TLS_DIR = f"{NODE['node_config_dir']}/tls"
CERT, KEY = f"{TLS_DIR}/node.crt", f"{TLS_DIR}/node.key"
PROBE = "/root/tls_probe.py"
FIREWALL_UNIT = FIREWALL["firewall_unit"]
SLOT = 9


def rayfed_port(slot: int = SLOT) -> int:
    return NODE["node_rayfed_ports"]["start"] + slot


def spu_port(slot: int = SLOT) -> int:
    return NODE["node_spu_ports"]["start"] + slot


def copy_in(pid: str, src: Path, dest: str) -> None:
    subprocess.run(["podman", "cp", str(src), f"{PARTIES[pid]}:{dest}"], check=True, capture_output=True)


def probe(host, *args: object) -> dict:
    return json.loads(host.check_output(f"python3 {PROBE} " + " ".join(str(a) for a in args)))


def stranger_files(tmp_path: Path, ip: str) -> tuple[Path, Path]:
    """A certificate of nobody in the federation (self-signed, for carol's address)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stranger")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "stranger.crt", tmp_path / "stranger.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def listening(host, port: int) -> bool:
    return f":{port} " in host.check_output(f"ss -ltnH 'sport = :{port}'") + " "


# What the first bytes of a TCP payload are, as nft matches them (@ih: the payload):
# a TLS handshake record (0x16 0x03), or the clear-text start of gRPC (an HTTP/2
# preface, "PRI ") or of brpc ("PRPC").
WIRE = {"tls": "@ih,0,16 0x1603", "http2": "@ih,0,32 0x50524920", "brpc": "@ih,0,32 0x50525043"}
TABLE = FIREWALL["firewall_table"]


def rules(host) -> list[dict]:
    listing = json.loads(host.check_output(f"nft -j list chain inet {TABLE} input"))
    return [item["rule"] for item in listing["nftables"] if "rule" in item]


def delete_rule(host, comment: str) -> None:
    for rule in rules(host):
        if rule.get("comment") == comment:
            host.run_expect([0], f"nft delete rule inet {TABLE} input handle {rule['handle']}")


def wire_counters(host, source: str, ports: dict[str, int]) -> None:
    """Counters of the packets from ``source`` to each of ``ports`` by how their payload starts."""
    for what, port in ports.items():
        for name, match in WIRE.items():
            host.run_expect([0], f"nft insert rule inet {TABLE} input ip saddr {source} tcp dport {port} {match} "
                                 f"counter comment wire-{what}-{name}")


def wire_counts(host) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for rule in rules(host):
        comment = rule.get("comment", "")
        if comment.startswith("wire-"):
            _, what, name = comment.split("-")
            packets = next(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
            counts.setdefault(what, {})[name] = packets
    return counts


def clear_text_drops(host) -> int:
    """Packets the firewall dropped because a connection to a TLS port began in clear text."""
    return sum(next(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
               for rule in rules(host) if rule.get("comment") == "clear text to a TLS port")


@contextmanager
def held_job(jobs: Jobs, party_hosts, slot: int = SLOT, wire: dict | None = None) -> Iterator[None]:
    """``wire``: filled with what the payloads from alice to bob's two ports of the job began with."""
    alice, bob = party_hosts["alice"], party_hosts["bob"]
    if wire is not None:
        wire_counters(bob, node_ip(alice), {"rayfed": rayfed_port(slot), "spu": spu_port(slot)})
    bob.run_expect([0], f"nft insert rule inet {TABLE} input ip saddr {node_ip(alice)} tcp dport {spu_port(slot)} "
                        "drop comment held-by-test")
    proc = jobs.start({"job_id": unique_job_id("held"), "kind": "spu_sum", "parties": ["alice", "bob"],
                       "slot": slot, "params": {"values": {"alice": 3, "bob": 4}}})
    try:
        wait_for(lambda: all(listening(h, p) for h in (alice, bob) for p in (rayfed_port(slot), spu_port(slot))),
                 240, "both parties' rayfed and SPU ports of the held job listening", step=2)
        yield
    finally:
        delete_rule(bob, "held-by-test")
        run = jobs.finish(proc)
        if wire is not None:
            wire.update(wire_counts(bob))
        bob.run_expect([0], f"systemctl reload {FIREWALL_UNIT}")  # the test's rules gone
    assert run.rc == 0, run
    assert {pid: r["result"]["sum"] for pid, r in run.results.items()} == {"alice": 7, "bob": 7}, run


@pytest.fixture(scope="module")
def probes(three_parties, party_hosts, tmp_path_factory) -> Path:
    for pid in PARTIES:
        copy_in(pid, Path(__file__).with_name("tls_probe.py"), PROBE)
    work = tmp_path_factory.mktemp("tls")
    cert, key = stranger_files(work, node_ip(party_hosts["carol"]))
    copy_in("carol", cert, "/root/stranger.crt")
    copy_in("carol", key, "/root/stranger.key")
    return work


def test_each_key_stays_on_its_node_and_every_node_pins_every_certificate(three_parties, party_hosts):
    certificates = {pid: host.file(CERT).content_string.strip() for pid, host in party_hosts.items()}
    for pid, host in party_hosts.items():
        key = host.file(KEY)
        assert (key.user, key.group, key.mode) == ("root", NODE["node_ray_user"], 0o640), pid
        doc = json.loads(host.file(f"{NODE['node_config_dir']}/federation.json").content_string)
        pinned = {p["id"]: p.get("certificate", "").strip() for p in doc["parties"]}
        assert pinned == certificates, pid
    cards = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent / "party-cards"
    for pid in ("alice", "bob"):
        card = yaml.safe_load((cards / f"{pid}.yml").read_text())
        assert card["id"] == pid and card["ip"] == node_ip(party_hosts[pid])
        assert card["certificate"].strip() == certificates[pid]
        assert "PRIVATE KEY" not in (cards / f"{pid}.yml").read_text()


def test_a_rotated_key_is_taken_by_the_peers_and_the_old_one_is_refused(three_parties, party_hosts, probes):
    """bob's key and certificate are renewed (one site.yml run with node_tls_rotate for bob), every
    party pins the new certificate, a PSI passes, and bob's old certificate no longer gets in."""
    alice, bob = party_hosts["alice"], party_hosts["bob"]
    bob.run_expect([0], f"cp {CERT} /root/old.crt && cp {KEY} /root/old.key")
    old = bob.file("/root/old.crt").content_string.strip()
    rotate = probes / "rotate-bob.yml"
    rotate.write_text(yaml.safe_dump({NODE["node_federation_group"]: {"hosts": {PARTIES["bob"]: {
        "node_tls_rotate": True}}}}))
    run = Jobs(three_parties.workdir, [*three_parties.inventories, str(rotate)]).playbook("site.yml")
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    new = bob.file(CERT).content_string.strip()
    assert new != old
    doc = json.loads(alice.file(f"{NODE['node_config_dir']}/federation.json").content_string)
    assert {p["id"]: p.get("certificate", "").strip() for p in doc["parties"]}["bob"] == new

    path = "psi/ids.csv"
    for pid in ("alice", "bob"):
        upload_psi_input(three_parties, pid, probes)
    psi = three_parties.run(psi_spec("alice", "bob", 4, path))
    assert psi.rc == 0, psi
    assert {pid: r["result"]["intersection_count"] for pid, r in psi.results.items()} == {"alice": 1000, "bob": 1000}

    with held_job(three_parties, party_hosts):
        ip, port = node_ip(alice), rayfed_port()
        assert probe(bob, "tls", ip, port, CERT, KEY)["accepted"], "bob's new certificate gets in"
        refused = probe(bob, "tls", ip, port, "/root/old.crt", "/root/old.key")
        assert not refused["accepted"], refused


def test_a_jobs_ports_take_only_tls_from_the_jobs_parties(three_parties, party_hosts, probes):
    alice, bob, carol = (party_hosts[p] for p in ("alice", "bob", "carol"))
    alice_cert = alice.file(CERT).content_string.strip()
    wire: dict = {}
    with held_job(three_parties, party_hosts, wire=wire):
        ip = node_ip(alice)
        for what, port in (("rayfed", rayfed_port()), ("SPU", spu_port())):
            # the job's own peer gets in, and sees alice's certificate: TLS on this port
            peer = probe(bob, "tls", ip, port, CERT, KEY)
            assert peer["accepted"], (what, peer)
            assert peer["server_certificate"].strip() == alice_cert, what
            # everyone else fails the handshake: a party of the federation that is not in the
            # job, a stranger with a certificate of its own, a client with none
            for who, args in (("carol, not in the job", (CERT, KEY)),
                              ("a stranger", ("/root/stranger.crt", "/root/stranger.key")),
                              ("no certificate", ())):
                outcome = probe(carol, "tls", ip, port, *args)
                assert not outcome["accepted"], (what, who, outcome)
        # in clear text, neither port answers, even the job's own peer: the firewall drops a
        # connection whose first data is not a TLS record (SPU's server would take clear text)
        dropped = clear_text_drops(alice)
        for port in (rayfed_port(), spu_port()):
            outcome = probe(bob, "plain", ip, port)
            assert outcome["connected"] and outcome["first_bytes"] == "", (port, outcome)
        assert clear_text_drops(alice) > dropped
        # the port gate: while the job runs, its ports drop everyone but the job's peers, so
        # carol cannot even open a connection (SPU's server would take clear text)
        for port in (rayfed_port(), spu_port()):
            outcome = probe(carol, "plain", ip, port)
            assert outcome == {"connected": False, "error": "TimeoutError"}, (port, outcome)
        # a reload of the firewall (site.yml adding a party) keeps a running job's gate
        alice.run_expect([0], f"systemctl reload {FIREWALL_UNIT}")
        assert not probe(carol, "plain", ip, spu_port())["connected"]
        assert probe(bob, "tls", ip, spu_port(), CERT, KEY)["accepted"]
    # on the wire, the job's traffic from alice to bob on both ports began as TLS handshakes,
    # never as clear-text gRPC or brpc
    for what in ("rayfed", "spu"):
        assert wire[what]["tls"] >= 1 and wire[what]["http2"] == 0 and wire[what]["brpc"] == 0, wire
    # the job is over: its ports are the federation's again (nothing listens: refused)
    for port in (rayfed_port(), spu_port()):
        assert probe(carol, "plain", ip, port) == {"connected": False, "error": "ConnectionRefusedError"}


def test_nothing_answers_on_the_ray_heads_ports_from_another_host(three_parties, party_hosts):
    """Ray's servers listen on every address (node_ip or not); the firewall keeps them to the host."""
    alice, bob = party_hosts["alice"], party_hosts["bob"]
    # every socket the Ray head's user listens on (ss names a user's own processes to that user)
    ports = set()
    for line in alice.check_output(f"runuser -u {NODE['node_ray_user']} -- ss -ltnpH").splitlines():
        if "users:((" in line:
            address = line.split()[3]
            if not address.startswith(("127.", "[::1]")):
                ports.add(int(address.rsplit(":", 1)[1]))
    assert len(ports) >= 3, ports  # the GCS, the raylet's, the agents'
    ip = node_ip(alice)
    answered = [port for port in sorted(ports) if connects(bob, ip, port, timeout=2)]
    assert answered == [], f"Ray ports of alice reachable from bob: {answered} (of {sorted(ports)})"

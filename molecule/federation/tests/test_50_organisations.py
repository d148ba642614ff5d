"""Two organisations that do not share an administrator: dan and erin, each
with its own inventory (its own host and nothing else) and its own controller
state (its own secrets directory). Each provisions its node with site.yml,
sends the card site.yml wrote to the other, adds the other's card to its
inventory and runs site.yml again; then each submits its own side of a PSI
and of a two-party spu_sum, which pass with TLS.

erin's certificates are signed by erin's own CA (node_tls_ca_certificate),
whose key only erin's CA owner holds: erin's first site.yml stops at its
certificate request, the CA's owner signs it, and the next run installs it;
dan trusts that CA for erin through erin's card. dan's are self-signed.

The two hosts are containers of their own, started here as molecule.yml
describes the scenario's hosts (image, network, options) and removed at the
end; each organisation's inventory carries the scenario's group vars."""
from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import Jobs, JobRun, unique_job_id
from shared import CACHE, NODE, ROOT, playbook_env

ORGS = {"dan": "sff-org-dan", "erin": "sff-org-erin"}
SCENARIO = yaml.safe_load((Path(__file__).resolve().parents[1] / "molecule.yml").read_text())
PLATFORM = SCENARIO["platforms"][0]  # how molecule starts the scenario's hosts
GROUP_VARS = SCENARIO["provisioner"]["inventory"]["group_vars"][NODE["node_federation_group"]]
# dan 1..2000, erin 1501..4000: 500 in common
RANGES = {"dan": (1, 2000), "erin": (1501, 4000)}


@dataclass
class Organisation:
    party: str
    container: str
    home: Path  # the organisation's controller state: inventory, secrets, cards
    settings: dict[str, Any] = field(default_factory=dict)  # its own group vars
    ca: CertificateAuthority | None = None  # the organisation's CA, if it has one

    @property
    def inventory(self) -> Path:
        return self.home / "hosts.yml"

    @property
    def card(self) -> Path:
        # where site.yml writes this organisation's own card (node_cards_out_dir)
        return self.home / "party-cards" / f"{self.party}.yml"

    @property
    def secrets(self) -> Path:
        return self.home / "secrets"

    def write_inventory(self, peer_cards: list[Path]) -> None:
        group_vars = {**GROUP_VARS,
                      "ansible_connection": "podman_nsenter",
                      "redis_password_dir": str(self.secrets),
                      "node_peer_cards": [str(p) for p in peer_cards], **self.settings}
        self.inventory.write_text(yaml.safe_dump({NODE["node_federation_group"]: {
            "vars": group_vars, "hosts": {self.container: {"node_id": self.party}}}}))

    def jobs(self) -> Jobs:
        return Jobs(self.home, [str(self.inventory)])


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=300)


def start_site(org: Organisation, run: str) -> tuple[subprocess.Popen, Path]:
    """The organisation runs site.yml on its own inventory (output kept in its home as site-RUN.log)."""
    log_path = org.home / f"site-{run}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            ["ansible-playbook", "-i", str(org.inventory), "site.yml",
             "-e", f"@{CACHE / 'python' / 'standin-vars.yml'}"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True, env=playbook_env())
    return proc, log_path


def finish_site(started: tuple[subprocess.Popen, Path]) -> tuple[int, str]:
    proc, log_path = started
    return proc.wait(timeout=1800), log_path.read_text()


def site_everywhere(orgs: dict[str, Organisation], run: str) -> dict[str, tuple[int, str]]:
    """Each organisation runs site.yml on its own inventory, at the same time: each
    one's exit code and output."""
    started = {pid: start_site(org, run) for pid, org in orgs.items()}
    return {pid: finish_site(s) for pid, s in started.items()}


class CertificateAuthority:
    """An organisation's root CA; its key stays with its owner (here: the test)."""

    def __init__(self, directory: Path, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(hours=1))
                     .not_valid_after(now + datetime.timedelta(days=3650))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                     .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                                  key_encipherment=False, data_encipherment=False,
                                                  key_agreement=False, key_cert_sign=True, crl_sign=True,
                                                  encipher_only=False, decipher_only=False), critical=True)
                     .sign(self.key, hashes.SHA256()))
        directory.mkdir(parents=True)
        self.path = directory / "ca.crt"  # what the inventory names: the certificate only
        self.path.write_bytes(self.pem.encode())

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def sign(self, request: Path, out: Path, days: int = 90) -> None:
        """What the CA's owner does with a node's request: a certificate with the request's
        subject, key and extensions (as openssl x509 -req -copy_extensions copy)."""
        csr = x509.load_pem_x509_csr(request.read_bytes())
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(self.cert.subject)
                   .public_key(csr.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=days)))
        for extension in csr.extensions:
            builder = builder.add_extension(extension.value, extension.critical)
        out.write_bytes(builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


def recap_hosts(output: str) -> set[str]:
    """The hosts a playbook run touched, from its PLAY RECAP."""
    recap = output.rsplit("PLAY RECAP", 1)[-1]
    return {line.split()[0] for line in recap.splitlines() if " : ok=" in line}


@pytest.fixture(scope="module")
def organisations(tmp_path_factory, request):
    orgs = {pid: Organisation(pid, name, tmp_path_factory.mktemp(f"org-{pid}")) for pid, name in ORGS.items()}

    def remove() -> None:
        for org in orgs.values():
            podman("rm", "-f", "-t", "5", org.container)
    request.addfinalizer(remove)
    for org in orgs.values():
        run = podman("run", "-d", "--name", org.container, "--hostname", org.party,
                     "--network", PLATFORM["network"], "--systemd=always",
                     *PLATFORM.get("extra_opts", []),
                     *(arg for cap in PLATFORM.get("capabilities", []) for arg in ("--cap-add", cap)),
                     *(arg for vol in PLATFORM.get("volumes", []) for arg in ("-v", os.path.expandvars(vol))),
                     PLATFORM["image"], PLATFORM["command"])
        assert run.returncode == 0, run.stderr

    # erin's certificates come from erin's CA
    erin = orgs["erin"]
    erin.ca = CertificateAuthority(erin.home / "ca", "erin's CA")
    erin.settings["node_tls_ca_certificate"] = str(erin.ca.path)

    # 1. each on its own: no peer yet; site.yml writes the organisation's card
    for org in orgs.values():
        org.write_inventory([])
    dan_run = start_site(orgs["dan"], "alone")
    # erin has no certificate yet: the run stops at erin's request, naming it
    rc, out = finish_site(start_site(erin, "request"))
    request, signed = erin.home / "tls-requests" / "erin.csr", erin.home / "tls-requests" / "erin.crt"
    flat = " ".join(out.split())
    assert rc != 0 and "party erin: its certificate must be signed by the CA of node_tls_ca_certificate" in flat, \
        out[-5000:]
    assert f"The certificate request is {request}" in flat and f"put the certificate at {signed}" in flat, out[-3000:]
    assert recap_hosts(out) == {erin.container}, out[-2000:]
    # erin's CA owner signs it; erin runs site.yml again, which installs it
    erin.ca.sign(request, signed)  # (erin.ca set above)
    erin_run = start_site(erin, "alone")  # while dan's may still run
    runs = {"dan": finish_site(dan_run), "erin": finish_site(erin_run)}
    for pid, (rc, out) in runs.items():
        assert rc == 0, (pid, out[-5000:])
        assert recap_hosts(out) == {orgs[pid].container}, (pid, out[-2000:])
        assert orgs[pid].card.exists(), pid

    # 2. the cards are exchanged (as files sent between the organisations)
    for pid, org in orgs.items():
        (org.home / "peers").mkdir()
        peers = []
        for other in orgs.values():
            if other is not org:
                peers.append(Path(shutil.copy(other.card, org.home / "peers" / other.card.name)))
        org.write_inventory(peers)
    for pid, (rc, out) in site_everywhere(orgs, "peers").items():
        assert rc == 0, (pid, out[-5000:])
        assert recap_hosts(out) == {orgs[pid].container}, (pid, out[-2000:])

    # each uploads its own input
    for pid, org in orgs.items():
        low, high = RANGES[pid]
        src = org.home / "ids.csv"
        src.write_text("uid\n" + "".join(f"id-{i:06d}\n" for i in range(low, high + 1)))
        org.jobs().upload(org.container, src, "shared/ids.csv")
    return orgs


def each_submits(orgs: dict[str, Organisation], spec: dict) -> dict[str, JobRun]:
    """The same spec, submitted by each organisation on its own inventory at the same time."""
    started = {pid: org.jobs().start(spec) for pid, org in orgs.items()}
    return {pid: Jobs.finish(proc) for pid, proc in started.items()}


def test_each_organisation_provisions_only_its_own_node_and_keeps_its_own_secrets(organisations):
    for pid, org in organisations.items():
        other = next(o for o in organisations.values() if o is not org)
        card = yaml.safe_load(org.card.read_text())
        assert card["id"] == pid and "BEGIN CERTIFICATE" in card["certificate"], card
        assert "PRIVATE KEY" not in org.card.read_text()
        # only its own broker password on its controller
        names = sorted(p.name for p in org.secrets.iterdir())
        assert names and all(pid in n for n in names) and not any(other.party in n for n in names), names
        # its node's federation file pins the other's certificate from the card
        out = subprocess.run(["podman", "exec", org.container, "cat", f"{NODE['node_config_dir']}/federation.json"],
                             capture_output=True, text=True, check=True).stdout
        by_id = {p["id"]: p for p in json.loads(out)["parties"]}
        assert sorted(by_id) == sorted(organisations), by_id
        other_card = yaml.safe_load(other.card.read_text())
        assert by_id[other.party]["certificate"] == other_card["certificate"]
        # erin's card names erin's CA, which dan's node trusts for erin; dan's is self-signed
        assert by_id[other.party].get("ca_certificate") == other_card["ca_certificate"]
    erin, dan = organisations["erin"], organisations["dan"]
    assert yaml.safe_load(dan.card.read_text())["ca_certificate"] is None
    erin_card = yaml.safe_load(erin.card.read_text())
    assert erin.ca is not None and erin_card["ca_certificate"].strip() == erin.ca.pem.strip()
    installed = x509.load_pem_x509_certificate(erin_card["certificate"].encode())
    installed.verify_directly_issued_by(erin.ca.cert)
    # the key of the installed certificate is the node's: the request's key took its place
    assert installed == x509.load_pem_x509_certificate((erin.home / "tls-requests" / "erin.crt").read_bytes())
    node_tls = f"{NODE['node_config_dir']}/tls"
    listing = podman("exec", erin.container, "ls", node_tls).stdout.split()
    assert sorted(listing) == ["node.crt", "node.key"], listing


def test_a_psi_between_two_organisations_each_submitting_its_own_side(organisations):
    spec = {"job_id": unique_job_id("psi-orgs"), "kind": "psi", "parties": ["dan", "erin"], "slot": 4,
            "params": {"inputs": {pid: {"path": "shared/ids.csv", "keys": ["uid"]} for pid in organisations},
                       "receiver": "dan", "broadcast_result": True}}
    runs = each_submits(organisations, spec)
    for pid, run in runs.items():
        assert run.rc == 0, (pid, run)
        assert set(run.results) == {pid}, (pid, run)  # each ran only its own side
        result = run.results[pid]["result"]
        low, high = RANGES[pid]
        assert result["original_count"] == high - low + 1, (pid, result)
        assert result["intersection_count"] == 500, (pid, result)


def test_a_two_party_spu_sum_between_two_organisations(organisations):
    spec = {"job_id": unique_job_id("sum-orgs"), "kind": "spu_sum", "parties": ["dan", "erin"], "slot": 5,
            "params": {"values": {"dan": 20, "erin": 22}}}
    runs = each_submits(organisations, spec)
    for pid, run in runs.items():
        assert run.rc == 0, (pid, run)
        assert set(run.results) == {pid}, (pid, run)
        assert run.results[pid]["result"]["sum"] == 42, (pid, run)

"""Bad settings are refused by site.yml's preflight with a message naming the
party, the variable, the value and what would be valid.

Runs `ansible-playbook site.yml --tags preflight` against this machine as a
one-party federation: only the read-only checks run (asserts, a df), so
nothing is changed anywhere, and no container is needed.
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GOOD = {"ansible_connection": "local", "ansible_become": False,
        "ansible_python_interpreter": sys.executable, "node_ip": "192.0.2.10"}


def preflight(tmp_path: Path, **overrides: object) -> subprocess.CompletedProcess[str]:
    return preflight_parties(tmp_path, {"alice": overrides})


def preflight_parties(tmp_path: Path, parties: dict[str, dict], *args: str) -> subprocess.CompletedProcess[str]:
    hosts = {}
    for name, overrides in parties.items():
        party = {**GOOD, **overrides}
        hosts[name] = {k: v for k, v in party.items() if v is not None}
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"federation": {"hosts": hosts}}))
    return subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory), "site.yml",
         "--tags", "preflight", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1"},
    )


def test_a_good_party_passes(tmp_path: Path) -> None:
    result = preflight(tmp_path, redis_password="a" * 32)
    assert result.returncode == 0, result.stdout + result.stderr


RAYFED, SPU = "node_rayfed_ports", "node_spu_ports"
CASES = {
    # identity and addresses
    "node_ip missing": ({"node_ip": None}, ["party alice", "node_ip is not set"]),
    "node_ip not an address": ({"node_ip": "300.1.2.3"},
                               ["party alice", "node_ip is '300.1.2.3', not an IP address"]),
    "node_ip unspecified": ({"node_ip": "0.0.0.0"}, ["party alice", "node_ip is 0.0.0.0, which names no host"]),
    "node_id not a valid id": ({"node_id": "Alice!"},
                               ["party Alice!", "node_id is 'Alice!'", "lowercase letter"]),
    # the SecretFlow port ranges
    "range inverted": ({RAYFED: {"start": 20031, "end": 20000}},
                       ["party alice", "node_rayfed_ports is 20031-20000", "start is after end"]),
    "range below 1024": ({SPU: {"start": 80, "end": 111}},
                         ["party alice", "node_spu_ports is 80-111", "within 1024-65535"]),
    "range not a mapping": ({RAYFED: "20000-20031"},
                            ["party alice", "node_rayfed_ports is '20000-20031'", "{start: PORT, end: PORT}"]),
    "the two ranges overlap": ({SPU: {"start": 20016, "end": 20047}},
                               ["party alice", "node_rayfed_ports 20000-20031 and node_spu_ports 20016-20047 overlap"]),
    "range inside Ray's worker ports": ({RAYFED: {"start": 22100, "end": 22131}},
                                        ["party alice", "node_rayfed_ports 22100-22131 overlaps ray_head_worker_ports"]),
    "range holds the Redis port": ({"redis_port": 21005},
                                   ["party alice", "node_spu_ports 21000-21031 overlaps redis_port (21005)"]),
    "range holds the Ray GCS port": ({"ray_head_port": 20010},
                                     ["party alice", "node_rayfed_ports 20000-20031 overlaps ray_head_port (20010)"]),
    "range holds Ray's client server": ({"ray_head_aux_ports": {"client_server": 21001}},
                                        ["party alice", "overlaps ray_head_aux_ports.client_server (21001)"]),
    "more concurrency than port slots": ({"celery_worker_concurrency": 40},
                                         ["party alice", "celery_worker_concurrency is 40", "32 port slots",
                                          "1 to 32"]),
    "zero concurrency": ({"celery_worker_concurrency": 0},
                         ["party alice", "celery_worker_concurrency is '0'", "a whole number >= 1"]),
    # Ray head resources
    "zero CPUs for Ray": ({"ray_head_num_cpus": 0},
                          ["party alice", "ray_head_num_cpus is '0'", "auto", ">= 1"]),
    "object store not a number": ({"ray_head_object_store_memory": "2GB"},
                                  ["party alice", "ray_head_object_store_memory is '2GB'", "number of bytes"]),
    "object store larger than /dev/shm": ({"ray_head_object_store_memory": 10**15},
                                          ["party alice", "1000000000000000 bytes", "/dev/shm"]),
    "object store above the share of memory": ({"ray_head_object_store_max_share": 0.01},
                                               ["party alice", "ray_head_object_store_max_share 0.01",
                                                "bytes of memory; valid: up to"]),
    "too many warm workers": ({"ray_head_warm_workers": 65},
                              ["party alice", "ray_head_warm_workers is '65'", "0..64"]),
    "a preload that is no module name": ({"ray_head_preload_modules": ["secretflow", "spu; rm"]},
                                         ["party alice", "ray_head_preload_modules", "spu; rm",
                                          "Python module names"]),
    # the job channel and this party's policy
    "a job policy with a kind that does not exist": (
        {"job_channel_policy": {"bob": {"kinds": {"psy": "accept"}, "datasets": ["/etc/*"]}}},
        ["party alice", "job_channel_policy.bob.kinds: 'psy' is not a job kind; expected one of ping, pipeline, psi, spu_sum",
         "job_channel_policy.bob.datasets: ['/etc/*'] is not valid", "relative to DATA_DIR"]),
    "a job policy that is no mapping": ({"job_channel_policy": "alice may do anything"},
                                        ["party alice", "job_channel_policy: 'alice may do anything' is not valid",
                                         "an object of peer rules by party id"]),
    "a job channel without TLS": ({"job_channel_enabled": True, "node_tls_enabled": False},
                                  ["party alice", "job_channel_enabled is true but node_tls_enabled is false",
                                   "job_channel_enabled: false on a node without TLS"]),
    "a job channel port out of range": ({"job_channel_port": 80},
                                        ["party alice", "job_channel_port is '80'", "valid: a port in 1024-65535"]),
    "a job channel port inside the rayfed range": ({"job_channel_port": 20005},
                                                   ["party alice", "node_rayfed_ports 20000-20031 overlaps "
                                                    "job_channel_port (20005)"]),
    # host, secrets, install
    "short Redis password": ({"redis_password": "short"},
                             ["party alice", "redis_password", "16 characters", "has\n5 characters"]),
    "unknown install source": ({"secretflow_runtime_install_source": "ftp"},
                               ["party alice", "secretflow_runtime_install_source is 'ftp'", "controller, index"]),
    "no Python archive for the architecture": ({"python_archive_checksums": {"riscv64": "0" * 64}},
                                               ["party alice", "python_archive_checksums has no entry",
                                                "riscv64"]),
    "firewall table name nft cannot take": ({"firewall_table": "secret-flow"},
                                            ["party alice", "firewall_table is 'secret-flow'",
                                             "a letter, then up to 31 letters, digits or '_'"]),
    "CA certificate that is not a file": ({"node_tls_ca_certificate": "/nonexistent/ca.crt"},
                                         ["party alice", "node_tls_ca_certificate is '/nonexistent/ca.crt', which is "
                                          "not a file on the controller", "or empty for a self-signed one"]),
    "CA certificate on a node without TLS": ({"node_tls_ca_certificate": "/nonexistent/ca.crt",
                                              "node_tls_enabled": False},
                                             ["party alice", "node_tls_ca_certificate is set but node_tls_enabled is "
                                              "false"]),
    "default deadline above the node's maximum": ({"node_job_deadline_seconds": 7200},
                                                  ["party alice", "node_job_deadline_seconds is 7200",
                                                   "node_job_max_deadline_seconds 3600", "at most the maximum"]),
    "unsupported operating system": ({"node_supported_systems": ["Debian 13"]},
                                     ["party alice", "which is not in node_supported_systems",
                                      "supported: Debian 13"]),
    "not enough disk for the venv": ({"secretflow_runtime_min_free_mb": 10**9},
                                     ["party alice", "MiB free on", "below secretflow_runtime_min_free_mb 1000000000"]),
    # upgrades and offline installs
    "a pin the lock does not have": ({"secretflow_runtime_requirements": ["secretflow==1.12.0b0", "click==8.5.1",
                                                                          "celery[redis]==5.6.1"]},
                                     ["party alice", "secretflow_runtime_requirements pins click==8.5.1",
                                      "it has: click==8.2.1", "scripts/lock-requirements.sh"]),
    "no venv kept for a rollback": ({"secretflow_runtime_venvs_keep": 1},
                                    ["party alice", "secretflow_runtime_venvs_keep is '1'", "at least 2"]),
    "bundle directory that is not a bundle": ({"node_bundle_dir": "/nonexistent/bundle"},
                                              ["party alice", "node_bundle_dir '/nonexistent/bundle' is not an offline",
                                               "playbooks/bundle.yml"]),
    "bundle with hosts installing from an index": ({"node_bundle_dir": "/nonexistent/bundle",
                                                    "secretflow_runtime_install_source": "index"},
                                                   ["party alice", "secretflow_runtime_install_source is 'index' with",
                                                    "valid with a bundle: controller"]),
}


# One preflight run for all cases: each case is a party of its own (its own
# address), and the verdict names every party's problems at once, which is
# what site.yml promises anyway. Bundle cases run apart: the bundle is read
# once per run.
SHARED_RUN = [name for name, (overrides, _) in CASES.items() if "node_bundle_dir" not in overrides]
BUNDLE_RUN = [name for name in CASES if name not in SHARED_RUN]


def _case_party(name: str, names: list[str]) -> str:
    return CASES[name][0].get("node_id", f"case{names.index(name):02d}")


def _problems_by_party(tmp_path: Path, names: list[str]) -> dict[str, str]:
    parties = {f"case{i:02d}": {"redis_password": "a" * 32, "node_ip": f"192.0.2.{20 + i}", **CASES[name][0]}
               for i, name in enumerate(names)}
    result = preflight_parties(tmp_path, parties)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output[-3000:]
    by_party: dict[str, str] = {}
    for part in output.split(" - party ")[1:]:
        party = re.match(r"[^\s:(]+", part)
        if party:
            by_party[party.group(0)] = by_party.get(party.group(0), "") + " party " + part
    return by_party


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return _problems_by_party(tmp_path_factory.mktemp("shared"), SHARED_RUN)


@pytest.fixture(scope="module")
def bundle_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return _problems_by_party(tmp_path_factory.mktemp("bundle"), BUNDLE_RUN)


@pytest.mark.parametrize("name", CASES.keys())
def test_bad_setting_is_refused_with_its_message(name: str, request: pytest.FixtureRequest) -> None:
    names = SHARED_RUN if name in SHARED_RUN else BUNDLE_RUN
    problems = request.getfixturevalue("shared_run" if name in SHARED_RUN else "bundle_run")
    party = _case_party(name, names)
    text = problems.get(party, "")
    for fragment in CASES[name][1]:
        fragment = " ".join(fragment.replace("party alice", f"party {party}").split())
        assert fragment in text, f"{fragment!r} not among the problems of party {party}:\n{text[-3000:]}"


def test_problems_across_parties_are_reported_together(tmp_path: Path) -> None:
    """Two parties: a duplicate id and a loopback address, both named in one run."""
    secret = {"redis_password": "a" * 32}
    result = preflight_parties(tmp_path, {
        "alice": {**secret, "node_ip": "127.0.0.1"},
        "bob": {**secret, "node_id": "alice", "node_ip": "192.0.2.11"},
    })
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output
    assert "node_ip is 127.0.0.1, a loopback address" in output, output[-3000:]
    assert "node_id 'alice' is used by hosts alice, bob" in output, output[-3000:]


def test_two_parties_on_one_address_with_the_same_ports_are_refused(tmp_path: Path) -> None:
    secret = {"redis_password": "a" * 32}
    result = preflight_parties(tmp_path, {"alice": {**secret}, "bob": {**secret}})
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output
    assert "parties alice, bob share node_ip 192.0.2.10 and the ports 20000-21031" in output, output[-3000:]


def test_every_problem_of_every_role_is_reported_in_one_run(tmp_path: Path) -> None:
    """Three roles' problems on one party and one on another: one run names all four."""
    result = preflight_parties(tmp_path, {
        "alice": {"redis_password": "short", "ray_head_num_cpus": 0, "celery_worker_concurrency": 40},
        "bob": {"redis_password": "b" * 32, "node_ip": "192.0.2.11", "secretflow_runtime_install_source": "ftp"},
    })
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output
    assert "preflight found 4 problem(s); nothing was changed on any host" in output, output[-3000:]
    for fragment in ["party alice: redis_password", "party alice: ray_head_num_cpus is '0'",
                     "party alice: celery_worker_concurrency is 40",
                     "party bob: secretflow_runtime_install_source is 'ftp'"]:
        assert fragment in output, f"{fragment!r} not in:\n{output[-3000:]}"


def test_a_run_that_leaves_a_party_out_is_refused(tmp_path: Path) -> None:
    secret = {"redis_password": "a" * 32}
    result = preflight_parties(tmp_path, {"alice": {**secret}, "bob": {**secret, "node_ip": "192.0.2.11"}},
                               "--limit", "alice")
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output
    assert "bob did not take part in this run" in output, output[-3000:]


def test_a_damaged_bundle_of_another_system_is_refused(tmp_path: Path) -> None:
    """A bundle whose files no longer match its checksums, built for another
    system, and without the Python or wheelhouse these settings need."""
    bundle = tmp_path / "bundle"
    (bundle / "python").mkdir(parents=True)
    (bundle / "debs.tar").write_bytes(b"packages")
    (bundle / "MANIFEST.yml").write_text(yaml.safe_dump({"system": "Debian 11", "architecture": "x86_64"}))
    sums = subprocess.run(["sha256sum", "debs.tar", "MANIFEST.yml"], cwd=bundle, capture_output=True, text=True,
                          check=True).stdout
    (bundle / "SHA256SUMS").write_text(sums)
    (bundle / "debs.tar").write_bytes(b"packages, altered")
    pinned = hashlib.sha256(sums.encode()).hexdigest()  # the pin of the bundle before it was altered
    result = preflight(tmp_path, redis_password="a" * 32, node_bundle_dir=str(bundle), node_bundle_sha256=pinned)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output
    assert f"node_bundle_sha256 pins '{pinned}'" not in output, output[-3000:]  # SHA256SUMS itself is intact
    for fragment in (f"the bundle node_bundle_dir '{bundle}' fails its checksums (debs.tar: FAILED",
                     f"'{bundle}' is for Debian 11 x86_64, but the host runs Debian 12",
                     "has no Python archive for python_version",
                     "has no wheelhouse of the current lock"):
        assert fragment in output, f"{fragment!r} not in:\n{output[-3000:]}"


def test_a_bundle_whose_sums_differ_from_the_pinned_ones_is_refused(tmp_path: Path) -> None:
    """A bundle substituted whole: its files match its own SHA256SUMS, but that
    file is not the one the inventory pins."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "MANIFEST.yml").write_text(yaml.safe_dump({"system": "Debian 12", "architecture": "x86_64"}))
    sums = subprocess.run(["sha256sum", "MANIFEST.yml"], cwd=bundle, capture_output=True, text=True,
                          check=True).stdout
    (bundle / "SHA256SUMS").write_text(sums)
    actual = hashlib.sha256(sums.encode()).hexdigest()
    result = preflight(tmp_path, redis_password="a" * 32, node_bundle_dir=str(bundle), node_bundle_sha256="0" * 64)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output
    assert "fails its checksums" not in output, output[-3000:]
    assert (f"the bundle node_bundle_dir '{bundle}' has SHA256SUMS of sha256 {actual}, but node_bundle_sha256 pins "
            f"'{'0' * 64}'") in output, output[-3000:]


def test_settings_that_would_inject_text_into_unit_files_and_redis_conf_are_refused(tmp_path: Path) -> None:
    """A newline or a space in a value that a template writes as is: each named."""
    result = preflight(tmp_path, redis_password="a" * 32,
                       redis_maxmemory="1gb\nslaveof 192.0.2.99 6379",
                       node_data_dir="/var/lib/secret flow",
                       ray_head_memory_max="75%\nExecStartPre=/bin/sh",
                       ray_head_extra_args=["--num-gpus=0", "--foo bar"],
                       celery_worker_queue="q\nUser=root")
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output
    # (a newline is shown escaped; the fragments stop before it)
    for fragment in ("party alice: redis_maxmemory is '1gb", "slaveof 192.0.2.99 6379'; valid: a size such as 256mb",
                     "party alice: node_data_dir is '/var/lib/secret flow'; valid: an absolute path",
                     "party alice: ray_head_memory_max is '75%", "ExecStartPre=/bin/sh'; valid: bytes",
                     "party alice: ray_head_extra_args is '--foo bar'; valid: arguments without spaces",
                     "party alice: celery_worker_queue is 'q", "User=root'; valid: 1 to 64 letters"):
        assert fragment in output, f"{fragment!r} not in:\n{output[-3000:]}"

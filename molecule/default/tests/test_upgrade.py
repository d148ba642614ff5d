"""Upgrades (after test_node.py: they change the node): a changed pin builds a
new venv beside the running one, switches to it and restarts the services;
the previous venv is kept, and going back to the old pins switches back
without installing anything; an install that fails leaves the node running.

The node has no route out, so the upgrade comes as an operator of such a site
would bring it: a new bundle built with the new pins and their lock."""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys

import pytest

from conftest import run_molecule_playbook, run_site
from shared import CACHE, ENV_FILE, NODE, RAY_UNIT, REDIS_UNIT, ROOT, UNITS, VENV, WORKER_UNIT, start_stamps

VENVS = f"{NODE['node_install_dir']}/venvs"  # secretflow_runtime_venvs_dir
LOCK = ROOT / "roles/secretflow_runtime/files/locks/cp310-x86_64.txt"
# click 8.5.1 works with ray 2.42.0's CLI and celery 5.6 (FACTS: click, ray and celery)
NEW_PINS = ["secretflow==1.12.0b0", "click==8.5.1", "celery[redis]==5.6.1"]
RESTARTED = (RAY_UNIT, WORKER_UNIT)


@pytest.fixture(scope="module")
def new_lock(tmp_path_factory):
    """The lock of the new pins: the closure is the same but for click (with
    the sha256 of its wheel, as scripts/lock-requirements.sh writes it)."""
    locks = tmp_path_factory.mktemp("locks")
    wheels = tmp_path_factory.mktemp("click")
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "-d", str(wheels), "click==8.5.1"], check=True, timeout=300)
    digest = hashlib.sha256(next(wheels.glob("click-8.5.1-*.whl")).read_bytes()).hexdigest()
    text, count = re.subn(r"^click==8\.2\.1 --hash=sha256:[0-9a-f]{64}$",
                          f"click==8.5.1 --hash=sha256:{digest}", LOCK.read_text(), flags=re.M)
    assert count == 1
    (locks / LOCK.name).write_text(text)
    return locks


def active_venv(host) -> str:
    return host.file(VENV).linked_to


def installed(host, dist: str) -> str:
    return host.check_output(f"{VENV}/bin/python -c 'import importlib.metadata as m; print(m.version(\"{dist}\"))'")


def healthy(host) -> dict:
    out = host.run(f"{VENV}/bin/sfnode health --env-file {ENV_FILE} --timeout 180")
    assert out.rc == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def venv_marks(host, venv: str) -> dict[str, float]:
    """When the venv was created (python -m venv writes pyvenv.cfg) and when its install completed."""
    return {mark: host.file(f"{venv}/{mark}").mtime for mark in ("pyvenv.cfg", ".complete")}


def complete_venvs(host) -> set[str]:
    return {name for name in host.file(VENVS).listdir() if host.file(f"{VENVS}/{name}/.complete").exists}


def assert_ok(run) -> None:
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]


def test_a_changed_pin_switches_to_a_new_venv_and_back(host, new_lock):
    old = active_venv(host)
    stamps = start_stamps(host)
    bundle = CACHE / "bundles" / "default-upgrade"
    new = json.dumps({"secretflow_runtime_requirements": NEW_PINS, "secretflow_runtime_lock_dir": str(new_lock),
                      "node_bundle_dir": str(bundle)})
    assert_ok(run_molecule_playbook("playbooks/bundle.yml", "-e", new, timeout=1800))

    # upgrade
    assert_ok(run_site("-e", new, timeout=1800))
    upgraded = active_venv(host)
    assert upgraded != old and upgraded.startswith(VENVS + "/")
    assert installed(host, "click") == "8.5.1"
    ray = host.run(f"{VENV}/bin/ray --version")
    assert ray.rc == 0 and "2.42.0" in ray.stdout, ray.stdout + ray.stderr
    assert host.run(f"{VENV}/bin/pip check").rc == 0
    assert healthy(host)["versions"]["click"] == "8.5.1"
    after = start_stamps(host)
    assert all(after[unit] != stamps[unit] for unit in RESTARTED), (stamps, after)
    assert after[REDIS_UNIT] == stamps[REDIS_UNIT]  # the broker kept its queue
    assert host.file(f"{old}/.complete").exists  # kept for a rollback

    # rollback: the scenario's own pins and bundle again; the kept venv is
    # switched back to, nothing is installed: a rebuild would have made the
    # venv anew (pyvenv.cfg) and marked it complete again
    built = venv_marks(host, old)
    run = run_site(timeout=1800)
    assert_ok(run)
    assert active_venv(host) == old
    assert venv_marks(host, old) == built
    assert installed(host, "click") == "8.2.1"
    assert healthy(host)["versions"]["click"] == "8.2.1"
    rolled = start_stamps(host)
    assert all(rolled[unit] != after[unit] for unit in RESTARTED), (after, rolled)
    # both kept (secretflow_runtime_venvs_keep: 2): rolling forward again installs nothing either
    assert sorted(host.file(VENVS).listdir()) == sorted([old.rsplit("/", 1)[1], upgraded.rsplit("/", 1)[1]])


def test_a_substituted_wheel_is_refused_and_leaves_the_running_node_untouched(host, tmp_path):
    """A wheel mirror that serves other files under the lock's names (a
    substituted wheel): pip refuses them by their sha256 after the new venv
    was begun; the active venv, the services and the worker's answers stay as
    they were."""
    locks = tmp_path / "locks"
    locks.mkdir()
    # a lock of its own with just the pins (preflight asks for them), their hashes kept
    pins = [line for line in LOCK.read_text().splitlines()
            if re.match(r"(secretflow==1\.12\.0b0|click==8\.2\.1|celery==5\.6\.1) ", line)]
    assert len(pins) == 3
    (locks / LOCK.name).write_text("\n".join(pins) + "\n")
    mirror = "/srv/substituted-wheel-mirror"
    host.run(f"mkdir -p {mirror}")
    for wheel in ("secretflow-1.12.0b0-cp310-cp310-manylinux2014_x86_64.whl", "click-8.2.1-py3-none-any.whl",
                  "celery-5.6.1-py3-none-any.whl"):
        assert host.run(f"echo not the locked wheel > {mirror}/{wheel}").rc == 0
    active, stamps = active_venv(host), start_stamps(host)
    before = complete_venvs(host)
    run = run_site("-e", json.dumps({
        "secretflow_runtime_lock_dir": str(locks), "node_bundle_dir": "",
        "secretflow_runtime_install_source": "index", "secretflow_runtime_pip_no_index": True,
        "secretflow_runtime_pip_find_links": [mirror]}))
    output = run.stdout + run.stderr
    assert run.returncode != 0, output[-3000:]
    assert "Venv | install the pinned set" in output, output[-3000:]
    assert "DO NOT MATCH THE HASHES" in output and "--require-hashes" in output, output[-3000:]
    assert active_venv(host) == active
    assert start_stamps(host) == stamps
    for unit in UNITS:
        assert host.service(unit).is_running
    assert healthy(host)["versions"]["click"] == "8.2.1"
    # the new venv was begun and left unfinished, beside the complete ones
    assert len(set(host.file(VENVS).listdir()) - complete_venvs(host)) == 1
    assert complete_venvs(host) == before

    # the next run with the good settings removes the unfinished venv and changes nothing else
    run = run_site()
    assert_ok(run)
    assert set(host.file(VENVS).listdir()) == before
    assert start_stamps(host) == stamps

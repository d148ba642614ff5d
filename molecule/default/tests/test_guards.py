"""What a node refuses or hides even from its own operator's mistakes: a job
id that would write outside the job store, an upload through a symlink the
service user planted, the broker password in a --check --diff preview or on
a command line during a restart."""
from __future__ import annotations

import json

from conftest import run_molecule_playbook, run_site
from shared import CACHE, NODE, RAY_UNIT, ROOT, WORKER_UNIT

USER, RAY_USER = NODE["node_user"], NODE["node_ray_user"]

FEDERATION_FILE = "/etc/secretflow/federation.json"
SUBMITTED = NODE["node_submitted_dir"]


def redis_password(host) -> str:
    for line in host.file("/etc/secretflow/redis.conf").content_string.splitlines():
        if line.startswith("requirepass "):
            return line.split(" ", 1)[1]
    raise AssertionError("redis.conf has no requirepass")


def test_a_traversing_job_id_is_refused_before_any_file_is_written(host, tmp_path):
    before = host.file(FEDERATION_FILE).sha256sum
    spec = tmp_path / "evil.json"
    spec.write_text(json.dumps({"job_id": "../../../../../etc/secretflow/federation", "kind": "ping",
                                "parties": ["alice", "bob"]}))
    run = run_molecule_playbook("playbooks/job.yml", "-e", f"job_spec={spec}")
    output = " ".join((run.stdout + run.stderr).split())
    assert run.returncode != 0, output[-3000:]
    assert "job spec field job_id: '../../../../../etc/secretflow/federation' is not a valid job id" in output, \
        output[-3000:]
    assert host.file(FEDERATION_FILE).sha256sum == before
    # nothing was written where the job store's specs go, either
    assert host.run(f"find {SUBMITTED} -type f").stdout == ""


def test_an_upload_through_a_planted_symlink_is_refused(host, tmp_path):
    """The service user links a data directory to /etc/systemd/system: the
    upload is refused, nothing lands there, and the target keeps its owner."""
    src = tmp_path / "unit.csv"
    src.write_text("id\n1\n")
    link = "/var/lib/secretflow/data/planted"
    assert host.run(f"runuser -u {USER} -- ln -sfn /etc/systemd/system {link}").rc == 0
    try:
        run = run_molecule_playbook("playbooks/upload.yml", "-e", f"src={src}", "-e", "dest=planted/evil.service")
        output = " ".join((run.stdout + run.stderr).split())
        assert run.returncode != 0, output[-3000:]
        assert f"dest 'planted/evil.service' passes through a symlink ({link})" in output, output[-3000:]
        assert not host.file("/etc/systemd/system/evil.service").exists
        assert host.file("/etc/systemd/system").user == "root"
    finally:
        host.run(f"rm -f {link}")


def test_an_upload_is_written_by_the_service_user(host, tmp_path):
    src = tmp_path / "ids.csv"
    src.write_text("id\n1\n2\n")
    run = run_molecule_playbook("playbooks/upload.yml", "-e", f"src={src}", "-e", "dest=guards/ids.csv")
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    written = host.file("/var/lib/secretflow/data/guards/ids.csv")
    # the Ray head's group may read it (its actors read inputs), not write it
    assert (written.user, written.group, written.mode) == (USER, RAY_USER, 0o640)
    assert written.content_string.splitlines() == ["id", "1", "2"]
    directory = host.file("/var/lib/secretflow/data/guards")
    assert (directory.user, directory.group, directory.mode) == (USER, RAY_USER, 0o2750)
    assert host.run(f"runuser -u {RAY_USER} -- cat /var/lib/secretflow/data/guards/ids.csv").rc == 0
    assert host.run(f"runuser -u {RAY_USER} -- sh -c 'echo x >> /var/lib/secretflow/data/guards/ids.csv'").rc != 0
    host.run("rm -rf /var/lib/secretflow/data/guards")


def test_a_check_diff_preview_of_a_broker_change_shows_no_password(host):
    password = redis_password(host)
    run = run_site("--check", "--diff", "-e", json.dumps({"redis_maxmemory": "128mb",
                                                            "celery_worker_concurrency": 1}))
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    # the preview did see both files change...
    assert "TASK [redis : Config (holds the password)]" in output
    assert "changed: [sff-alice]" in output
    # ...and printed neither the password nor a URL holding it
    assert password not in output
    assert "requirepass" not in output


def test_no_command_line_holds_the_password_during_a_restart(host):
    """restart.yml waits on Redis with the password: a sampler on the node
    records every process's command line every 0.1 s while it runs."""
    password = redis_password(host)
    flag, log = "/run/sff-ps-sampling", "/run/sff-ps-samples.log"
    host.run(f"rm -f {log}; touch {flag}")
    started = host.run(f"setsid sh -c 'while [ -e {flag} ]; do ps -eo args >> {log}; echo ---- >> {log}; "
                       f"sleep 0.1; done' >/dev/null 2>&1 < /dev/null &")
    assert started.rc == 0, started.stderr
    try:
        run = run_molecule_playbook("playbooks/restart.yml", "-vvv")
    finally:
        host.run(f"rm -f {flag}")
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    samples = int(host.check_output(f"grep -c -- ---- {log}"))
    assert samples > 20, samples
    # awk takes the password from redis.conf itself: no command line here holds it
    leaked = host.check_output(
        f"awk 'NR == FNR {{ if ($1 == \"requirepass\") pw = $2; next }} index($0, pw) {{ n++ }} "
        f"END {{ print n + 0 }}' /etc/secretflow/redis.conf {log}")
    assert leaked == "0", f"{leaked} sampled command lines held the password during the restart"
    assert password not in output  # -vvv shows module arguments
    host.run(f"rm -f {log}")


def test_the_ray_head_runs_as_its_own_user_who_cannot_read_the_broker_password(host):
    raylet = host.run("ps -o user= -C raylet").stdout.split()
    assert raylet and set(raylet) == {RAY_USER}, raylet
    denied = host.run(f"runuser -u {RAY_USER} -- cat /etc/secretflow/node.env")
    assert denied.rc != 0 and "Permission denied" in denied.stderr
    assert host.run(f"runuser -u {RAY_USER} -- cat /etc/secretflow/redis.conf").rc != 0
    # the worker's user reads it (the worker's own configuration)
    assert host.run(f"runuser -u {USER} -- cat /etc/secretflow/node.env").rc == 0


def test_inputs_are_read_only_to_both_services(host):
    for unit in (RAY_UNIT, WORKER_UNIT):
        paths = host.check_output(f"systemctl show -p ReadOnlyPaths --value {unit}")
        assert "/var/lib/secretflow/data" in paths.split(), (unit, paths)
    data = host.file("/var/lib/secretflow/data")
    assert (data.user, data.group, data.mode) == (USER, RAY_USER, 0o2750)
    assert host.run(f"runuser -u {RAY_USER} -- touch /var/lib/secretflow/data/planted").rc != 0

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import env_for
from sfnode.config import ConfigError, NodeConfig, PortRange, child_environment, read_env_file, redact_url


def test_valid_mapping_parses_every_key(tmp_path: Path) -> None:
    config = NodeConfig.from_mapping(env_for(tmp_path))
    assert config.node_id == "alice"
    assert config.ray_address == "10.89.0.2:61379"
    assert config.rayfed_ports == PortRange(20000, 20031)
    assert config.spu_ports.port(3) == 21003
    assert config.slots == 32
    assert config.worker_concurrency == 2
    assert config.job_dir == tmp_path / "jobs"


def test_env_file_skips_blanks_and_comments(tmp_path: Path) -> None:
    lines = ["# rendered by the roles", ""] + [f"{k}={v}" for k, v in env_for(tmp_path).items()]
    path = tmp_path / "node.env"
    path.write_text("\n".join(lines) + "\n")
    config = NodeConfig.from_env_file(path)
    assert config.redis_url == "redis://:secret@127.0.0.1:60379/0"
    assert config.to_env()["RAYFED_PORTS"] == "20000-20031"


def test_env_file_line_without_equals_is_named(tmp_path: Path) -> None:
    path = tmp_path / "node.env"
    path.write_text("NODE_ID=alice\nexport NODE_IP\n")
    with pytest.raises(ConfigError, match=r"line 2 'export NODE_IP' is not KEY=VALUE"):
        read_env_file(path)


def test_localhost_in_password_is_not_the_host(tmp_path: Path) -> None:
    env = env_for(tmp_path, REDIS_URL="redis://:localhost@10.0.0.5:6379/0")
    with pytest.raises(ConfigError) as err:
        NodeConfig.from_mapping(env)
    message = str(err.value)
    assert "REDIS_URL=" in message
    assert "host '10.0.0.5'" in message
    assert "loopback" in message
    assert "localhost@" not in message  # the password is redacted, not echoed


def test_non_loopback_broker_rejected_in_production(tmp_path: Path) -> None:
    env = env_for(tmp_path, REDIS_URL="redis://:pw@redis.example.org:6379/0")
    with pytest.raises(ConfigError) as err:
        NodeConfig.from_mapping(env)
    assert len(err.value.problems) == 1
    problem = err.value.problems[0]
    assert problem.startswith("REDIS_URL='redis://:***@redis.example.org:6379/0'")
    assert "APP_ENV=production" in problem and "127.0.0.1, ::1 or localhost" in problem


@pytest.mark.parametrize("url", ["redis://:pw@127.0.0.1:6379/0", "redis://:pw@127.8.9.1:6379",
                                 "rediss://:pw@localhost:6380/2", "redis://:pw@[::1]:6379/0"])
def test_loopback_brokers_accepted_in_production(tmp_path: Path, url: str) -> None:
    assert NodeConfig.from_mapping(env_for(tmp_path, REDIS_URL=url)).redis_url == url


def test_non_loopback_broker_allowed_in_development(tmp_path: Path) -> None:
    env = env_for(tmp_path, APP_ENV="development", REDIS_URL="redis://:pw@10.0.0.5:6379/0")
    assert NodeConfig.from_mapping(env).app_env == "development"


def test_url_without_port_or_with_wrong_scheme(tmp_path: Path) -> None:
    env = env_for(tmp_path, REDIS_URL="redis://127.0.0.1/0", RESULT_BACKEND_URL="http://127.0.0.1:1")
    with pytest.raises(ConfigError) as err:
        NodeConfig.from_mapping(env)
    text = str(err.value)
    assert "REDIS_URL='redis://127.0.0.1/0' has no port" in text
    assert "RESULT_BACKEND_URL='http://127.0.0.1:1' has scheme 'http'" in text


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    env = env_for(tmp_path, NODE_ID="Alice!", NODE_IP="10.89.0.300", RAYFED_PORTS="20031-20000",
                  SPU_PORTS="80-90", APP_ENV="prod")
    del env["JOB_DIR"]
    with pytest.raises(ConfigError) as err:
        NodeConfig.from_mapping(env)
    text = str(err.value)
    for fragment in ("NODE_ID='Alice!'", "[a-z][a-z0-9_-]{0,31}", "NODE_IP='10.89.0.300'",
                     "RAYFED_PORTS='20031-20000' start 20031 is greater than end 20000",
                     "SPU_PORTS='80-90' port 80 is outside 1024..65535", "APP_ENV='prod'",
                     "JOB_DIR is missing"):
        assert fragment in text
    assert len(err.value.problems) == 6


@pytest.mark.parametrize("value", ["20000", "20000-", "a-b", "20000-70000"])
def test_bad_port_ranges(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"RAYFED_PORTS='{value}'"):
        NodeConfig.from_mapping(env_for(tmp_path, RAYFED_PORTS=value))


def test_overlapping_ranges_and_ray_port_inside(tmp_path: Path) -> None:
    env = env_for(tmp_path, SPU_PORTS="20010-20040", RAY_PORT="20005")
    with pytest.raises(ConfigError) as err:
        NodeConfig.from_mapping(env)
    text = str(err.value)
    assert "overlaps SPU_PORTS" in text
    assert "RAY_PORT=20005 lies inside RAYFED_PORTS" in text


def test_concurrency_beyond_slots(tmp_path: Path) -> None:
    env = env_for(tmp_path, RAYFED_PORTS="20000-20001", WORKER_CONCURRENCY="3")
    with pytest.raises(ConfigError, match=r"WORKER_CONCURRENCY=3 exceeds the 2 port slots"):
        NodeConfig.from_mapping(env)


def test_redact_url() -> None:
    assert redact_url("redis://:s3cr@t@127.0.0.1:1/0") == "redis://:***@127.0.0.1:1/0"
    assert redact_url("redis://127.0.0.1:1/0") == "redis://127.0.0.1:1/0"


def test_service_units_keep_their_order(tmp_path: Path) -> None:
    env = env_for(tmp_path, SERVICE_UNITS=" worker=w.service , redis=r@1.service")
    config = NodeConfig.from_mapping(env)
    assert config.service_units == (("worker", "w.service"), ("redis", "r@1.service"))
    assert config.to_env()["SERVICE_UNITS"] == "worker=w.service,redis=r@1.service"
    assert NodeConfig.from_mapping(config.to_env()) == config


@pytest.mark.parametrize("value", ["", "  "])
def test_no_service_units_means_none_to_check(tmp_path: Path, value: str) -> None:
    assert NodeConfig.from_mapping(env_for(tmp_path, SERVICE_UNITS=value)).service_units == ()
    env = env_for(tmp_path)
    del env["SERVICE_UNITS"]
    assert NodeConfig.from_mapping(env).service_units == ()


@pytest.mark.parametrize(("value", "problem"), [
    ("redis", "SERVICE_UNITS='redis' has 'redis', which is not COMPONENT=UNIT; expected "
              "comma-separated COMPONENT=UNIT pairs"),
    ("Redis=r.service", "SERVICE_UNITS='Redis=r.service' names component 'Redis'; expected a "
                        "component matching [a-z_]+"),
    ("redis=r.socket", "SERVICE_UNITS='redis=r.socket' names unit 'r.socket'; expected a unit "
                       r"matching [A-Za-z0-9@._-]+\.service"),
    ("redis=r.service,redis=s.service", "names component 'redis' twice; expected each "
                                        "component once"),
    ("redis=r.service,worker=r.service", "names unit 'r.service' twice; expected each unit once"),
    ("redis=r.service,", "has '', which is not COMPONENT=UNIT"),
])
def test_bad_service_units_are_named(tmp_path: Path, value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        NodeConfig.from_mapping(env_for(tmp_path, SERVICE_UNITS=value))
    assert len(err.value.problems) == 1
    assert problem in err.value.problems[0]


def test_a_default_deadline_above_the_node_maximum_is_refused(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    bad = {**env, "JOB_MAX_DEADLINE_SECONDS": "900", "JOB_DEADLINE_SECONDS": "1200"}
    with pytest.raises(ConfigError) as caught:
        NodeConfig.from_mapping(bad)
    assert "JOB_DEADLINE_SECONDS='1200' is not valid; expected an integer in 1..900" in str(caught.value)
    assert NodeConfig.from_mapping({**env, "JOB_MAX_DEADLINE_SECONDS": "7200"}).job_max_deadline_seconds == 7200


def test_child_environment_is_a_driver_of_another_users_head(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = NodeConfig.from_mapping(env_for(tmp_path))
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.9:6379")
    env = child_environment(config)
    # ray.init gets its address from the node, not from an inherited variable
    assert "RAY_ADDRESS" not in env
    # without this, a driver that is not the Ray head's user aborts in ray.init
    assert env["RAY_event_log_reporter_enabled"] == "0"
    assert env["NODE_ID"] == config.node_id


# --- TLS between parties -------------------------------------------------------------------


def test_without_tls_keys_the_node_runs_without_tls(tmp_path: Path) -> None:
    config = NodeConfig.from_mapping(env_for(tmp_path))
    assert (config.tls_cert, config.tls_key, config.tls_enabled) == (None, None, False)
    assert config.to_env()["TLS_CERT"] == "" and config.to_env()["TLS_KEY"] == ""
    empty = NodeConfig.from_mapping(env_for(tmp_path, TLS_CERT="", TLS_KEY=" "))
    assert empty.tls_enabled is False


def test_tls_keys_enable_tls_and_round_trip(tmp_path: Path) -> None:
    env = env_for(tmp_path, TLS_CERT="/etc/secretflow/tls/node.crt",
                  TLS_KEY="/etc/secretflow/tls/node.key")
    config = NodeConfig.from_mapping(env)
    assert config.tls_enabled is True
    assert config.tls_cert == Path("/etc/secretflow/tls/node.crt")
    assert config.tls_key == Path("/etc/secretflow/tls/node.key")
    assert config.to_env()["TLS_CERT"] == "/etc/secretflow/tls/node.crt"
    assert config.to_env()["TLS_KEY"] == "/etc/secretflow/tls/node.key"
    assert NodeConfig.from_mapping(config.to_env()) == config
    # what the runner gets from its supervisor
    assert child_environment(config)["TLS_KEY"] == "/etc/secretflow/tls/node.key"


@pytest.mark.parametrize(("given", "missing"), [("TLS_CERT", "TLS_KEY"), ("TLS_KEY", "TLS_CERT")])
def test_one_tls_key_without_the_other_is_named(tmp_path: Path, given: str, missing: str) -> None:
    with pytest.raises(ConfigError) as err:
        NodeConfig.from_mapping(env_for(tmp_path, **{given: "/etc/secretflow/tls/x.pem"}))
    assert err.value.problems == [
        f"{missing} is empty while {given} is set; expected both TLS_CERT and TLS_KEY (this "
        "node's certificate and private key, absolute paths) for TLS between parties, or "
        "neither to run without TLS"]
    assert err.value.records[0].field == missing


def test_relative_tls_paths_are_named_with_every_other_problem(tmp_path: Path) -> None:
    env = env_for(tmp_path, TLS_CERT="tls/node.crt", TLS_KEY="node.key", NODE_IP="10.89.0")
    with pytest.raises(ConfigError) as err:
        NodeConfig.from_mapping(env)
    assert len(err.value.problems) == 3
    text = str(err.value)
    assert "TLS_CERT='tls/node.crt' is a relative path; expected an absolute path" in text
    assert "TLS_KEY='node.key' is a relative path; expected an absolute path" in text
    assert "NODE_IP='10.89.0'" in text


def test_the_port_gate_is_off_unless_named_and_must_be_an_absolute_path(tmp_path: Path) -> None:
    assert NodeConfig.from_mapping(env_for(tmp_path)).port_gate is None
    on = NodeConfig.from_mapping(env_for(tmp_path, PORT_GATE="/run/secretflow-gate.sock"))
    assert on.port_gate == Path("/run/secretflow-gate.sock")
    assert NodeConfig.from_mapping(on.to_env()).port_gate == on.port_gate
    with pytest.raises(ConfigError) as err:
        NodeConfig.from_mapping(env_for(tmp_path, PORT_GATE="gate.sock"))
    assert "PORT_GATE='gate.sock' is a relative path; expected an absolute path" in str(err.value)

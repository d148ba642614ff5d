from __future__ import annotations

import json
from pathlib import Path

import pytest

from sfnode import cli as cli_module
from sfnode.cli import main
from sfnode.config import NodeConfig


@pytest.fixture
def env_file(config: NodeConfig, tmp_path: Path) -> Path:
    path = tmp_path / "node.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in config.to_env().items()))
    return path


def write(tmp_path: Path, name: str, data: object) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


SHORT = {"job_id": "ping-7", "kind": "ping", "slot": 1, "parties": ["alice", "bob"]}


def test_expand_prints_full_spec(env_file: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["expand", str(write(tmp_path, "s.json", SHORT)), "--env-file",
                 str(env_file)]) == 0
    full = json.loads(capsys.readouterr().out)
    assert full["parties"][1] == {"id": "bob", "ip": "10.89.0.3", "rayfed_port": 20001,
                                  "spu_port": 21001}
    assert full["deadline_seconds"] == 600


def test_validate_exit_codes(env_file: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(write(tmp_path, "ok.json", SHORT)), "--env-file",
                 str(env_file)]) == 0
    assert "is valid on party alice" in capsys.readouterr().out
    bad = {**SHORT, "kind": "pong", "job_id": "Bad"}
    assert main(["validate", str(write(tmp_path, "bad.json", bad)), "--env-file",
                 str(env_file)]) == 1
    err = capsys.readouterr().err
    assert "job spec field job_id: 'Bad'" in err and "job spec field kind: 'pong'" in err


def test_bad_env_file_is_a_usage_error(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    env = write(tmp_path, "s.json", SHORT)
    assert main(["validate", str(env), "--env-file", str(tmp_path / "absent.env")]) == 2
    assert "cannot read env file" in capsys.readouterr().err


def test_submit_rejects_broker_of_non_participant(env_file: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, "s.json", SHORT)
    code = main(["submit", str(spec), "--env-file", str(env_file), "--broker",
                 "carol=redis://127.0.0.1:6379/0"])
    assert code == 2
    assert "'carol' is not a party of job 'ping-7'" in capsys.readouterr().err


def test_submit_needs_backend_for_other_party(env_file: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, "s.json", SHORT)
    url = write(tmp_path, "bob.url", "redis://:pw@127.0.0.1:6479/0\n")
    code = main(["submit", str(spec), "--env-file", str(env_file), "--broker", f"bob=@{url}"])
    assert code == 2
    assert "needs --backend bob=@FILE" in capsys.readouterr().err


def test_submit_refuses_a_password_on_the_command_line(env_file: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, "s.json", SHORT)
    code = main(["submit", str(spec), "--env-file", str(env_file), "--broker",
                 "bob=redis://:s3cret-pass@127.0.0.1:6479/0"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--broker bob=redis://:***@127.0.0.1:6479/0: a password on the command line" in err
    assert "give --broker bob=@FILE" in err
    assert "s3cret-pass" not in err


def test_submit_reads_a_url_file_it_cannot_open_as_a_usage_error(env_file: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, "s.json", SHORT)
    code = main(["submit", str(spec), "--env-file", str(env_file), "--broker",
                 f"bob=@{tmp_path / 'absent.url'}"])
    assert code == 2
    assert "cannot read the URL file" in capsys.readouterr().err


class FakeResult:
    """A Celery result: answers (or raises) in turn on each get()."""

    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.timeouts: list[float] = []

    def get(self, timeout: float, propagate: bool) -> object:
        self.timeouts.append(timeout)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def test_the_answer_is_taken_as_soon_as_it_is_stored(monkeypatch: pytest.MonkeyPatch) -> None:
    from sfnode.cli import _wait_for

    monkeypatch.setattr(cli_module.time, "sleep", lambda seconds: None)
    result = FakeResult(ConnectionError("backend restarting"), {"ok": True})
    give_up = cli_module.time.monotonic() + 60
    assert _wait_for(result, give_up) == {"ok": True}
    # one blocking wait for the rest of the time, no polling interval
    assert len(result.timeouts) == 2 and all(50 < t <= 60 for t in result.timeouts)


def test_no_answer_in_time_is_none() -> None:
    from celery.exceptions import TimeoutError as CeleryTimeout

    from sfnode.cli import _wait_for

    assert _wait_for(FakeResult(CeleryTimeout()), cli_module.time.monotonic() + 1) is None
    assert _wait_for(FakeResult({"ok": True}), cli_module.time.monotonic() - 1) is None
    assert _wait_for(FakeResult("boom"), cli_module.time.monotonic() + 1) == {
        "ok": False, "error": "task failed: 'boom'"}

"""Warm Ray workers: counting the idle ones, asking the raylet for the missing ones."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from sfnode import warm
from sfnode.config import NodeConfig


def fake_proc(tmp_path: Path, cmdlines: dict[str, bytes]) -> Path:
    for pid, cmdline in cmdlines.items():
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "cmdline").write_bytes(cmdline)
    (tmp_path / "self").mkdir()  # not a pid
    return tmp_path


def test_idle_workers_counts_only_workers_no_job_holds(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {
        "101": b"ray::IDLE\x00", "102": b"ray::IDLE\x00", "103": b"ray::SPURuntime.__init__\x00",
        "104": b"/venv/bin/python\x00-m\x00sfnode.runner\x00--standby\x00",
        "105": b"",  # a kernel thread
    })
    assert warm.idle_workers(proc) == 2


def warm_config(config: NodeConfig, workers: int = 4, port: int | None = 61385) -> NodeConfig:
    return replace(config, ray_warm_workers=workers, ray_node_manager_port=port)


def test_top_up_asks_the_raylet_for_the_missing_workers(config: NodeConfig) -> None:
    asked: list[tuple[str, int]] = []
    started = warm.top_up(warm_config(config), count_idle=lambda: 1,
                          start=lambda address, count: asked.append((address, count)))
    assert started == 3
    assert asked == [("10.89.0.2:61385", 3)]


@pytest.mark.parametrize("workers, port, idle", [(4, 61385, 4), (4, 61385, 6), (0, 61385, 0),
                                                 (4, None, 0)])
def test_top_up_asks_nothing_of_a_full_or_disabled_pool(config: NodeConfig, workers: int,
                                                         port: int | None, idle: int) -> None:
    asked: list[int] = []
    assert warm.top_up(warm_config(config, workers, port), count_idle=lambda: idle,
                       start=lambda address, count: asked.append(count)) == 0
    assert asked == []


def test_a_raylet_that_refuses_costs_a_warning_never_the_job(
        config: NodeConfig, caplog: pytest.LogCaptureFixture) -> None:
    def refuse(address: str, count: int) -> None:
        raise ConnectionRefusedError("connection refused")

    with caplog.at_level(logging.WARNING):
        assert warm.top_up(warm_config(config), count_idle=lambda: 0, start=refuse) == 0
    assert "party alice" in caplog.text and "connection refused" in caplog.text


def test_the_head_unit_waits_for_its_raylet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(warm.time, "sleep", lambda seconds: None)
    tries: list[int] = []

    def start(address: str, count: int) -> None:
        tries.append(count)
        if len(tries) < 3:
            raise ConnectionRefusedError("not yet")

    assert warm.wait_and_prestart("10.89.0.2:61385", 4, 30, start=start) is True
    assert tries == [4, 4, 4]


def test_the_head_unit_gives_up_on_a_raylet_that_never_listens(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(0, 1000, 10))
    monkeypatch.setattr(warm.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(warm.time, "sleep", lambda seconds: None)

    def refuse(address: str, count: int) -> None:
        raise ConnectionRefusedError("refused")

    assert warm.wait_and_prestart("10.89.0.2:61385", 4, 30, start=refuse) is False

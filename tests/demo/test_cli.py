"""``p2p-grid demo`` as a command: options, the banner, Ctrl-C, the summary."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_socket

from grid_server.cli import demo as demo_cli
from grid_server.cli.main import build_parser, main
from grid_server.demo.runner import DEFAULT_SPEED, HOUSEHOLDS_AT_DEFAULT_SPEED, DemoOptions

pytestmark = pytest.mark.usefixtures("socket_enabled")


@pytest.fixture(autouse=True)
def _loopback(socket_enabled: None) -> None:
    pytest_socket.socket_allow_hosts(["127.0.0.1"])


def test_options_and_defaults() -> None:
    args = build_parser().parse_args(["demo"])
    options = demo_cli.options_from(args)
    assert options.households == 30
    assert options.resolved_speed() == DEFAULT_SPEED  # an interval every 3 s
    assert options.days is None and options.port == 8080 and options.database is None
    assert options.sharing is False  # sharing after delivery is the operator's choice
    assert demo_cli.options_from(build_parser().parse_args(["demo", "--sharing", "on"])).sharing
    # Slower for big neighbourhoods: 1,000 households keep up at about 10x.
    assert DemoOptions(households=HOUSEHOLDS_AT_DEFAULT_SPEED).resolved_speed() == DEFAULT_SPEED
    assert 9 <= DemoOptions(households=1000).resolved_speed() <= 11
    assert DemoOptions(households=3000).resolved_speed() < 3
    assert DemoOptions(households=3000, speed=500).resolved_speed() == 500
    assert demo_cli.start_time("2026-06-15T03:00:00Z") == datetime(2026, 6, 15, 3, tzinfo=UTC)
    assert demo_cli.start_time("today").hour == 0
    with pytest.raises(argparse.ArgumentTypeError):
        demo_cli.start_time("tomorrow")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--households", "0"])


def test_refuses_an_existing_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    existing = tmp_path / "grid.db"
    existing.write_text("")
    assert main(["demo", "--database", str(existing)]) == 1
    assert "exists" in capsys.readouterr().out
    # Less than one interval to simulate, or a step that does not divide it.
    assert main(["demo", "--days", "0.005"]) == 2
    assert main(["demo", "--step", "7"]) == 2
    assert "interval" in capsys.readouterr().out


def test_ctrl_c_stops_cleanly_and_says_where_the_database_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "demo.db"
    started = demo_cli._View.started
    running = threading.Event()
    timers: list[threading.Timer] = []

    def ctrl_c() -> None:
        # Only while the demo runs (and its handler is installed): a stray
        # SIGINT would stop the test run itself.
        if running.is_set():
            os.kill(os.getpid(), signal.SIGINT)

    def started_then_interrupt(self: Any, info: Any) -> None:
        started(self, info)
        running.set()
        # Ctrl-C a few simulated intervals later.
        timers.append(threading.Timer(2.5, ctrl_c))
        timers[-1].start()

    monkeypatch.setattr(demo_cli._View, "started", started_then_interrupt)
    try:
        status = main(
            [
                "demo",
                "--households",
                "4",
                "--speed",
                "900",
                "--port",
                "0",
                "--database",
                str(database),
                "--start",
                "2026-06-15T10:00:00Z",
            ]
        )
    finally:
        running.clear()
        for timer in timers:
            timer.cancel()
    out = capsys.readouterr().out
    assert status == 0  # stopping an open-ended demo is how it ends
    assert "4 households" in out
    assert "grid server    http://127.0.0.1:" in out
    assert "/dashboard/login?ticket=" in out  # the dashboard's one-time login link
    assert "stopping" in out
    assert "Summary 2026-06-15 10:00" in out
    assert "interrupted" in out
    assert f"Database: {database}" in out
    assert database.exists()

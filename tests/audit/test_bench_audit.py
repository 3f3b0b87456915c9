"""``p2p-grid bench audit`` on a small log: every run it times verifies the log it built."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grid_server.cli.main import main


def test_the_audit_benchmark_times_whole_incremental_and_daily_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/grid.db"
    command = ["bench", "audit", "--entries", "400", "--households", "12", "--workers", "0"]
    command += ["--database-url", url, "--incremental", "--daily"]
    assert main(command) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["incremental_ok"] and report["daily_ok"]
    assert report["entries"] >= 400 and report["roots"] >= 2
    # The daily run starts at the first root: it checks every later signature, and
    # reads fewer entries than the whole log.
    assert 0 < report["daily_signatures"] < report["envelopes"]
    assert report["daily_entries"] < report["entries"]
    assert report["build_seconds"] > 0 and len(report["load_average"]) == 3
    # --reuse verifies the same database again without building (the whole run only).
    assert main([*command[:-2], "--reuse"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["build_seconds"] == 0 and again["entries"] == report["entries"]
    assert "incremental_ok" not in again and "daily_ok" not in again

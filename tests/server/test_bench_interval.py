"""``p2p-grid bench interval`` on a small grid: every phase timed, the books balance."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from grid_server.cli import bench
from grid_server.cli.bench_interval import PHASES
from grid_server.cli.bench_interval import bench as bench_interval


def test_the_cli_knows_the_benchmark() -> None:
    parser = argparse.ArgumentParser()
    bench.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "interval", "--households", "40", "--seed", "3"])
    assert (args.benchmark, args.households, args.seed, args.database_url) == (
        "interval",
        40,
        3,
        None,
    )
    assert "grid_server.cli.bench_interval" in bench.BENCH_MODULES


async def test_a_whole_interval_for_40_households(tmp_path: Path) -> None:
    report = await bench_interval(40, seed=2, folder=tmp_path, progress=False)
    json.dumps(report)  # one JSON line
    assert report["benchmark"] == "interval"
    assert (report["households"], report["database"]) == (40, "sqlite")
    for phase in PHASES:
        assert report[f"{phase}_seconds"] >= 0, phase
        assert report[f"{phase}_cpu_seconds"] >= 0, phase
    assert report["total_cpu_seconds"] > 0
    phases = sum(report[f"{phase}_seconds"] for phase in PHASES)
    assert abs(report["total_seconds"] - phases) < 0.05
    # SQLite's target is set at 10,000 households: 40 neither meet nor miss it.
    assert report["target"] == {"households": 10_000, "seconds": 10}
    assert report["met"] is None
    for key in ("setup_seconds", "signing_seconds", "peak_rss_mb"):
        assert report[key] > 0, key
    assert "load_before" in report and "load_after" in report
    # Every household ordered, reported, got exactly one statement; all of them paid.
    assert report["orders"] == report["readings_envelopes"] == report["statements"] == 40
    assert report["statements_once"] and report["all_paid"]
    assert 0 < report["payments"] < 40
    # Every producer the grid owed got exactly one payout.
    assert report["payouts_once"] and report["producers_paid"] > 0
    # Money is neither made nor lost: the balances add up to what was minted.
    assert report["conserved"] and report["balances_total"] == report["minted"]
    assert report["consistent"]

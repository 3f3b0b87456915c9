"""``p2p-grid bench BENCHMARK``: the benchmarks behind docs/developers/benchmarks.md.

Each benchmark is a sub-command of ``bench``. ``clearing`` lives here; other
modules add theirs by exposing ``register(bench_subparsers)`` and being
listed in :data:`BENCH_MODULES`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import statistics
import sys
import time
from typing import Any

from grid_server.domain.market import clear_arrays, solve_reference
from grid_server.domain.market.synthetic import random_book
from p2p_energy_client.units import format_nano

# Modules (full dotted names) that add further ``bench`` sub-commands.
BENCH_MODULES: tuple[str, ...] = (
    "grid_server.cli.bench_ingest",
    "grid_server.cli.bench_audit",
    "grid_server.cli.bench_interval",
    "grid_server.cli.bench_flood",
)

WELFARE_REL_TOL = 1e-9


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench", help="run a benchmark and print one JSON line", description=__doc__
    )
    benchmarks = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    _register_clearing(benchmarks)
    for name in BENCH_MODULES:
        importlib.import_module(name).register(benchmarks)


def _register_clearing(benchmarks: Any) -> None:
    parser = benchmarks.add_parser(
        "clearing",
        help="clear a reproducible random order book with the fast path",
        description=(
            "Generate a seeded random book (a random tree of zones with fees and "
            "capacities, prices around and beyond the utility's), clear it with the "
            "fast path and print orders, zones, seconds (median of --repeat runs, "
            "clearing only, the book already in arrays) and welfare. --check also "
            "solves it with HiGHS."
        ),
    )
    parser.add_argument("--orders", type=_positive, required=True, help="number of orders")
    parser.add_argument("--zones", type=_positive, default=1, help="number of zones (default 1)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--repeat", type=_positive, default=5, help="timed runs (default 5)")
    parser.add_argument("--check", action="store_true", help="also solve with HiGHS and compare")
    parser.set_defaults(func=run_clearing)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def run_clearing(args: argparse.Namespace) -> int:
    tree, utility, orders = random_book(args.orders, args.zones, args.seed)
    timings = []
    welfare: set[int] = set()
    for _ in range(args.repeat):
        started = time.perf_counter()
        result = clear_arrays(tree, utility, orders)
        timings.append(time.perf_counter() - started)
        welfare.add(result.welfare_nano)
    if len(welfare) != 1:
        print(f"p2p-grid bench clearing: runs disagree: {sorted(welfare)}", file=sys.stderr)
        return 1
    (welfare_nano,) = welfare
    report: dict[str, Any] = {
        "benchmark": "clearing",
        "orders": args.orders,
        "zones": args.zones,
        "seed": args.seed,
        "repeat": args.repeat,
        "seconds": round(statistics.median(timings), 4),
        "welfare": format_nano(welfare_nano),
    }
    status = 0
    if args.check:
        reference = solve_reference(tree, utility, orders)
        agree = math.isclose(
            welfare_nano / 1e9, reference.welfare, rel_tol=WELFARE_REL_TOL, abs_tol=1e-9
        )
        difference = abs(welfare_nano / 1e9 - reference.welfare) / max(abs(reference.welfare), 1e-9)
        report |= {
            "highs_seconds": round(reference.seconds, 4),
            "highs_welfare": f"{reference.welfare:.9f}",
            "relative_difference": float(f"{difference:.2e}"),
            "agree": agree,
        }
        status = 0 if agree else 1
    print(json.dumps(report))
    return status

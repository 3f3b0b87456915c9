"""``p2p-grid bench flood``: a member's latency while outsiders flood the grid.

Starts ``p2p-grid serve`` (SQLite in a temporary folder, or ``--database-url``
PostgreSQL) at the **default limits**, joins one member, and measures the
member's signed writes (a reading of the current interval, then corrections
of it: one commit each) at ``--member-rate`` per second from 127.0.0.1:

1. idle, for ``--seconds``;
2. while a separate process floods the grid with envelopes of keys that are
   no members (fresh keys, well signed, ``--readings`` readings each) over
   ``--connections`` connections from ``--addresses`` other loopback
   addresses (127.0.0.2 …), as fast as the server answers. It runs at nice
   10: an attacker's CPU is not the server's, and on one machine the load
   generator would otherwise take the CPU the server needs.

Prints one JSON line: the member's median and 95th-percentile latency idle
and under flood and their ratio, the outsiders' requests and how they were
answered, the server's CPU seconds, the machine's load average. The issue's
bar: under flood the member's median stays within twice its idle value.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import secrets
import statistics
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from grid_server.config import Settings
from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.protocol import Assets, Join, MeterDecl, Reading, Readings
from p2p_energy_client.units import interval_start

from .bench_ingest import _invitations, _wait_ready, sign_fast
from .bench_support import ProcessTree, grid_server_process, load_average, scratch_database

# The limits the server runs with: its defaults (bench_support lifts them for load tests).
DEFAULT_LIMITS = {
    f"P2P_{name.upper()}": str(Settings.model_fields[name].default)
    for name in (
        "rate_per_key",
        "burst_per_key",
        "rate_per_address",
        "burst_per_address",
        "refusals_per_address",
        "refusal_burst_per_address",
    )
}


def register(benchmarks: Any) -> None:
    parser = benchmarks.add_parser(
        "flood", help="a member's latency while outsiders flood the grid", description=__doc__
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="each phase (default 20)")
    parser.add_argument("--member-rate", type=float, default=1.5, help="member writes/s")
    parser.add_argument("--connections", type=int, default=32, help="outsider connections")
    parser.add_argument("--addresses", type=int, default=4, help="outsider loopback addresses")
    parser.add_argument("--readings", type=int, default=1440, help="readings per outsider envelope")
    parser.add_argument("--database-url", help="PostgreSQL server to run on (default SQLite)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = asyncio.run(_bench(args))
    print(json.dumps(result))
    return 0


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    token = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="p2p-bench-") as folder:
        async with scratch_database(args.database_url, Path(folder)) as database:
            with grid_server_process(Path(folder), database, token, env=DEFAULT_LIMITS) as (
                url,
                process,
            ):
                return await _measure(args, url, token, ProcessTree(process.pid))


async def _measure(
    args: argparse.Namespace, url: str, token: str, server: ProcessTree
) -> dict[str, Any]:
    import aiohttp  # noqa: PLC0415 - heavy; only the load generator needs it

    load_before = load_average()
    async with aiohttp.ClientSession() as http:
        await _wait_ready(http, url)
        async with http.get(f"{url}/api/v1/grid") as resp:
            info = await resp.json()
        member = _Member(http, url, info["grid"], int(info["interval_minutes"]))
        await member.join((await _invitations(http, url, token, 1))[0])
        await member.measure(args.member_rate, 3.0)  # warm up
        idle = await member.measure(args.member_rate, args.seconds)
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        flood = context.Process(
            target=_flood_process,
            args=(url, info["grid"], args, args.seconds + 4.0, results),
        )
        before = server.sample()
        flood.start()
        await asyncio.sleep(3.0)  # the flood is under way
        flooded = await member.measure(args.member_rate, args.seconds)
        outsiders: dict[str, Any] = await asyncio.to_thread(results.get, True, 120)
        flood.join(30)
        after = server.sample()
    return {
        "benchmark": "flood",
        "member_idle_median_ms": _ms(statistics.median(idle)),
        "member_idle_p95_ms": _ms(_p95(idle)),
        "member_flood_median_ms": _ms(statistics.median(flooded)),
        "member_flood_p95_ms": _ms(_p95(flooded)),
        "median_ratio": round(statistics.median(flooded) / statistics.median(idle), 2),
        "member_writes": len(idle) + len(flooded),
        "member_errors": member.errors,
        "outsider_requests": outsiders["requests"],
        "outsider_requests_per_second": outsiders["per_second"],
        "outsider_answers": outsiders["answers"],
        "outsider_readings_per_envelope": args.readings,
        "outsider_connections": args.connections,
        "outsider_addresses": args.addresses,
        "server_cpu_seconds_during_flood": round(after.cpu_seconds - before.cpu_seconds, 1)
        if after and before
        else None,
        "database": "postgresql" if args.database_url else "sqlite",
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


class _Member:
    """One household writing signed readings at a steady rate from 127.0.0.1."""

    def __init__(self, http: Any, url: str, grid: str, minutes: int) -> None:
        self.http, self.url, self.grid, self.minutes = http, url, grid, minutes
        self.keys = KeyPair.generate()
        self.seq = time.time_ns() // 1_000_000
        self.sent = 0
        self.errors: Counter[int] = Counter()

    async def _post(self, path: str, body: Any) -> tuple[int, float]:
        self.seq += 1
        raw = sign_fast(self.keys, self.grid, self.seq, body)
        started = time.perf_counter()
        async with self.http.post(f"{self.url}/api/v1{path}", data=raw) as resp:
            await resp.read()
            return resp.status, time.perf_counter() - started

    async def join(self, code: str) -> None:
        for path, body in (
            ("/participants", Join(code, "Bench member")),
            ("/assets", Assets((), (MeterDecl("main", "Main meter", 20_000),))),
        ):
            status, _ = await self._post(path, body)
            if status != 200:
                raise SystemExit(f"bench flood: the member could not {path}: HTTP {status}")

    async def measure(self, rate: float, seconds: float) -> list[float]:
        latencies: list[float] = []
        started = time.perf_counter()
        n = 0
        while time.perf_counter() - started < seconds:
            due = started + n / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            now = datetime.now(UTC)
            reading = Reading(interval_start(now, self.minutes), "main", 1 + self.sent % 900)
            status, latency = await self._post(
                "/readings", Readings((reading,), correction=self.sent > 0)
            )
            if status == 200:
                latencies.append(latency)
                self.sent += 1
            else:
                self.errors[status] += 1
            n += 1
        return latencies


def _flood_process(
    url: str, grid: str, args: argparse.Namespace, seconds: float, results: Any
) -> None:
    # A real attacker's CPU is not the server's: on one machine the generator
    # yields the CPU to the server and the member first.
    os.nice(10)
    results.put(asyncio.run(_flood(url, grid, args, seconds)))


async def _flood(url: str, grid: str, args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    import aiohttp  # noqa: PLC0415

    now = datetime.now(UTC)
    start = interval_start(now, 1)
    readings = tuple(Reading(start - timedelta(minutes=i), "main", 1) for i in range(args.readings))
    # Fresh, well-signed keys: nothing a cheaper check than membership could refuse.
    envelopes = [sign_fast(KeyPair.generate(), grid, 1, Readings(readings)) for _ in range(200)]
    answers: Counter[str] = Counter()
    deadline = time.perf_counter() + seconds

    async def connection(i: int) -> None:
        address = f"127.0.0.{2 + i % max(1, args.addresses)}"
        connector = aiohttp.TCPConnector(local_addr=(address, 0), limit=1)
        async with aiohttp.ClientSession(connector=connector) as http:
            n = i
            while time.perf_counter() < deadline:
                try:
                    async with http.post(
                        f"{url}/api/v1/readings", data=envelopes[n % len(envelopes)]
                    ) as resp:
                        await resp.read()
                        answers[str(resp.status)] += 1
                except aiohttp.ClientError as exc:
                    answers[type(exc).__name__] += 1
                n += 1

    started = time.perf_counter()
    await asyncio.gather(*(connection(i) for i in range(args.connections)))
    elapsed = time.perf_counter() - started
    total = sum(answers.values())
    return {
        "requests": total,
        "per_second": round(total / elapsed, 1),
        "answers": dict(answers),
    }

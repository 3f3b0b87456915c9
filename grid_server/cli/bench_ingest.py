"""``p2p-grid bench ingest``: signed meter reports over HTTP, as fast as the grid takes them.

Without ``--url`` it starts its own grid server (``p2p-grid serve`` in a
separate process, ``--workers`` of them, on SQLite in a temporary folder
unless ``--database-url`` names a PostgreSQL server, in which case a scratch
database is created beside the named one and dropped afterwards) on a free
loopback port.

Set-up, not timed: N keys, N invitations (operator requests), N joins and N
asset declarations (a solar source and a meter), all over HTTP. Then every
report — one signed ``readings`` envelope per household and interval, with a
source and a meter reading — is signed in advance (households sign on their
own machines) and posted by a lean keep-alive HTTP client
(:mod:`.bench_loadgen`) over ``--connections`` connections. A report counts
when the grid has answered 200, which it does only after the commit.

* Without ``--seconds`` each household sends one report (N reports).
* With ``--seconds S`` the run is sustained: households report the current
  interval round after round (after the first round as corrections: a new
  value, the old one kept in the history) until S seconds have passed. A
  household's next report goes out only after its previous one was answered.
* ``--rate R`` sends at a fixed R reports/s (open loop; latency counts from
  when a report was due) instead of as fast as the connections allow.

Prints one JSON line: reports, seconds, reports_per_s, p50/p90/p99/max
latency, errors, the server's CPU seconds per report and its peak resident
memory (when it started the server), the load generator's own CPU per
report, and the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from p2p_energy_client.crypto import KeyPair, b64encode
from p2p_energy_client.protocol import (
    Assets,
    Body,
    Header,
    Join,
    MeterDecl,
    Payload,
    Reading,
    Readings,
    SourceDecl,
    SourceKind,
    canonical_json,
)
from p2p_energy_client.units import interval_start

from .bench_loadgen import PostResults, percentile, post_all
from .bench_support import (
    ProcessTree,
    TreeSample,
    grid_server_process,
    load_average,
    own_cpu_seconds,
    scratch_database,
)

# Pre-signed reports per second of --seconds when no --rate is given: more
# than the server is expected to take, so the run ends by time.
PRESIGN_RATE = 2_500
# At most this many rounds (reports per household) are signed in advance.
MAX_ROUNDS = 90


def register(benchmarks: Any) -> None:
    parser = benchmarks.add_parser(
        "ingest", help="signed meter reports per second over HTTP", description=__doc__
    )
    parser.add_argument("--households", type=_positive, default=10_000, help="households")
    parser.add_argument(
        "--seconds", type=float, help="sustained run: keep reporting for this many seconds"
    )
    parser.add_argument("--rate", type=float, help="send at this many reports/s (open loop)")
    parser.add_argument("--connections", type=_positive, default=64, help="HTTP connections")
    parser.add_argument("--workers", type=_positive, default=1, help="server workers (PostgreSQL)")
    parser.add_argument("--database-url", help="PostgreSQL server to benchmark on (default SQLite)")
    parser.add_argument("--url", help="use a running grid server instead of starting one")
    parser.add_argument("--operator-token", help="operator token of the --url server")
    parser.set_defaults(func=run)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def run(args: argparse.Namespace) -> int:
    try:
        import uvloop  # noqa: PLC0415 - optional (uvicorn[standard]); asyncio's loop without it

        result = uvloop.run(_bench(args))
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        result = asyncio.run(_bench(args))
    print(json.dumps(result))
    return 0 if result["errors"] == 0 else 1


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    if args.url:
        if not args.operator_token:
            raise SystemExit("--url needs --operator-token")
        return await _measure(args, args.url, args.operator_token, None)
    token = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="p2p-bench-") as folder:
        async with scratch_database(args.database_url, Path(folder)) as database:
            with grid_server_process(Path(folder), database, token, workers=args.workers) as (
                url,
                process,
            ):
                return await _measure(args, url, token, ProcessTree(process.pid))


async def _measure(
    args: argparse.Namespace, url: str, token: str, server: ProcessTree | None
) -> dict[str, Any]:
    import aiohttp  # noqa: PLC0415 - heavy; only the load generator needs it

    n = args.households
    load_before = load_average()
    setup_started = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        await _wait_ready(http, url)
        async with http.get(f"{url}/api/v1/grid") as resp:
            info = await resp.json()
        codes = await _invitations(http, url, token, n)
    grid_id = info["grid"]
    minutes = int(info["interval_minutes"])
    keys = [KeyPair.generate() for _ in range(n)]
    seq0 = time.time_ns() // 1_000_000
    owners = list(range(n))

    def signed(i: int, step: int, body: Body) -> bytes:
        return sign_fast(keys[i], grid_id, seq0 + step, body)

    joins = [signed(i, 0, Join(codes[i], f"Household {i}")) for i in range(n)]
    await _setup_post(f"{url}/api/v1/participants", joins, owners, args.connections)
    assets = Assets(
        (SourceDecl("pv", "Roof", SourceKind.SOLAR, 8_000),),
        (MeterDecl("main", "Main meter", 20_000),),
    )
    declared = [signed(i, 1, assets) for i in range(n)]
    await _setup_post(f"{url}/api/v1/assets", declared, owners, args.connections)
    rounds = 1
    if args.seconds:
        per_second = args.rate or PRESIGN_RATE
        rounds = max(1, min(MAX_ROUNDS, math.ceil(args.seconds * per_second / n)))
    current = interval_start(datetime.now(UTC), minutes)
    reports, report_owners = _reports(n, rounds, current, signed)
    setup_seconds = time.perf_counter() - setup_started

    print(
        f"bench ingest: set-up done in {setup_seconds:.0f} s; sending {len(reports)} reports",
        file=sys.stderr,
        flush=True,
    )
    before = server.sample() if server else None
    client_before = own_cpu_seconds()
    results = await post_all(
        f"{url}/api/v1/readings",
        reports,
        report_owners,
        connections=args.connections,
        rate=args.rate,
        seconds=args.seconds,
    )
    client_cpu = own_cpu_seconds() - client_before
    after = server.sample() if server else None
    return _report(
        args,
        results,
        setup_seconds=setup_seconds,
        before=before,
        after=after,
        client_cpu=client_cpu,
        load_before=load_before,
    )


def _reports(
    n: int, rounds: int, current: datetime, signed: Callable[[int, int, Body], bytes]
) -> tuple[list[bytes], list[int]]:
    """Every household's reading of ``current``, ``rounds`` times, and whose each is.

    Assets exist from their declaration on, so every round reports the
    current interval; rounds after the first are corrections (a new value,
    the old one kept in the history): as much work as a first report.
    """
    reports: list[bytes] = []
    owners: list[int] = []
    for r in range(rounds):
        for i in range(n):
            reading = Readings(
                (
                    Reading(current, "pv", 100 + (i + r) % 900),
                    Reading(current, "main", 200 + (i * 7 + r) % 700),
                ),
                correction=r > 0,
            )
            reports.append(signed(i, 2 + r, reading))
            owners.append(i)
    return reports, owners


def sign_fast(keys: KeyPair, grid: str, seq: int, body: Body) -> bytes:
    """A signed envelope's bytes, as ``protocol.sign`` makes them but a little cheaper."""
    header = Header(grid, keys.address, seq, datetime.now(UTC).replace(microsecond=0))
    payload = Payload(header, body).to_wire()
    signature = keys.sign(canonical_json(payload))
    envelope = {
        "payload": payload,
        "public_key": keys.public_key_b64,
        "signature": b64encode(signature),
    }
    return orjson.dumps(envelope)


def _report(
    args: argparse.Namespace,
    results: PostResults,
    *,
    setup_seconds: float,
    before: TreeSample | None,
    after: TreeSample | None,
    client_cpu: float,
    load_before: float | None,
) -> dict[str, Any]:
    ms = sorted(x * 1000 for x in results.latencies)
    done = len(ms)
    seconds = results.seconds
    report: dict[str, Any] = {
        "benchmark": "ingest",
        "households": args.households,
        "database": "remote"
        if args.url
        else ("postgresql" if (args.database_url or "").startswith("postgres") else "sqlite"),
        "workers": args.workers,
        "connections": args.connections,
        "target_rate": args.rate,
        "reports": done,
        "errors": results.errors,
        "seconds": round(seconds, 3),
        "reports_per_s": round(done / seconds, 1) if seconds else None,
        "p50_ms": _round(percentile(ms, 0.5)),
        "p90_ms": _round(percentile(ms, 0.9)),
        "p99_ms": _round(percentile(ms, 0.99)),
        "max_ms": _round(ms[-1] if ms else None),
        "mean_ms": _round(statistics.fmean(ms) if ms else None),
    }
    if before is not None and after is not None and done:
        cpu = after.cpu_seconds - before.cpu_seconds
        report |= {
            "server_cpu_s": round(cpu, 2),
            "server_cpu_ms_per_report": round(cpu / done * 1000, 3),
            "server_cores_busy": round(cpu / seconds, 2) if seconds else None,
            "server_peak_rss_mb": round(after.peak_rss_bytes / 2**20, 1),
            "server_total_peak_rss_mb": round(after.total_peak_rss_bytes / 2**20, 1),
            "server_processes": after.processes,
        }
    if done:
        report["client_cpu_ms_per_report"] = round(client_cpu / done * 1000, 3)
    report |= {
        "setup_s": round(setup_seconds, 1),
        "load_avg_before": load_before,
        "load_avg_after": load_average(),
    }
    if results.errors:
        for sample in results.samples:
            print(sample, file=sys.stderr)
    return report


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


async def _invitations(http: Any, url: str, token: str, n: int) -> list[str]:
    codes: list[str] = []
    while len(codes) < n:
        count = min(100_000, n - len(codes))
        async with http.post(
            f"{url}/api/v1/operator/invitations",
            json={"count": count},
            headers={"Authorization": f"Bearer {token}"},
        ) as resp:
            data = await resp.json()
            if resp.status != 201:
                raise SystemExit(f"cannot issue invitations: {data}")
        codes += [i["code"] for i in data["invitations"]] if count > 1 else [data["code"]]
    return codes


async def _setup_post(url: str, bodies: list[bytes], owners: list[int], connections: int) -> None:
    results = await post_all(url, bodies, owners, connections=connections)
    if results.errors:
        raise SystemExit(f"set-up failed at {url}: {results.samples}")


async def _wait_ready(http: Any, url: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            async with http.get(f"{url}/api/v1/health") as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit(f"grid server at {url} did not become ready")

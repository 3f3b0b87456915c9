"""``p2p-grid bench ingest``: signed meter reports over HTTP, as fast as the grid takes them.

Without ``--url`` it starts its own grid server (``p2p-grid serve`` in a
separate process, on SQLite in a temporary folder unless ``--database-url``
names another database) on a free loopback port. Set-up, not timed: N keys,
N invitations (one operator request), N joins and N asset declarations. Then
every household's report for the current interval (one signed ``readings``
envelope with a source and a meter reading) is signed in advance and posted
over a few keep-alive connections; each report counts when the grid has
answered 200, which it does only after the commit. Prints one JSON line:
reports, seconds, reports_per_s, p50_ms, p99_ms, errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.protocol import (
    Assets,
    Body,
    Join,
    MeterDecl,
    Reading,
    Readings,
    SourceDecl,
    SourceKind,
    sign,
)
from p2p_energy_client.units import interval_start


def register(benchmarks: Any) -> None:
    parser = benchmarks.add_parser(
        "ingest", help="signed meter reports per second over HTTP", description=__doc__
    )
    parser.add_argument("--households", type=int, default=10_000, help="reports to send")
    parser.add_argument("--database-url", help="database of the server it starts (default SQLite)")
    parser.add_argument("--url", help="use a running grid server instead of starting one")
    parser.add_argument("--operator-token", help="operator token of the --url server")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections")
    parser.add_argument("--workers", type=int, default=1, help="server workers (PostgreSQL)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = asyncio.run(_bench(args))
    print(json.dumps(result))
    return 0 if result["errors"] == 0 else 1


@contextlib.contextmanager
def _server(args: argparse.Namespace, token: str) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="p2p-bench-") as folder:
        port = _free_port()
        config = Path(folder) / "grid.toml"
        config.write_text('[grid]\nid = "bench-grid"\nname = "Benchmark grid"\n')
        database = args.database_url or f"sqlite:///{folder}/grid.db"
        env = {
            **os.environ,
            "P2P_OPERATOR_TOKEN": token,
            "P2P_LOG_LEVEL": "WARNING",
        }
        command = [
            sys.executable,
            "-m",
            "grid_server.cli.main",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--database-url",
            database,
            "--config",
            str(config),
            "--workers",
            str(args.workers),
        ]
        process = subprocess.Popen(command, env=env)  # noqa: S603 - our own server
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    if args.url:
        if not args.operator_token:
            raise SystemExit("--url needs --operator-token")
        return await _measure(args, args.url, args.operator_token)
    token = secrets.token_urlsafe(16)
    scratch = None
    if args.database_url and args.database_url.startswith(("postgres://", "postgresql")):
        # Never write into the named database: benchmark in a throwaway one beside it.
        scratch = f"p2p_bench_{secrets.token_hex(4)}"
        await _pg_admin(args.database_url, f'CREATE DATABASE "{scratch}"')
        args.database_url = f"{args.database_url.rpartition('/')[0]}/{scratch}"
    try:
        with _server(args, token) as url:
            return await _measure(args, url, token)
    finally:
        if scratch is not None:
            await _pg_admin(args.database_url, f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')


async def _pg_admin(url: str, statement: str) -> None:
    import asyncpg  # noqa: PLC0415

    base = url.replace("postgresql+asyncpg://", "postgresql://").replace(
        "postgres://", "postgresql://"
    )
    conn = await asyncpg.connect(base.rpartition("/")[0] + "/postgres")
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _measure(args: argparse.Namespace, url: str, token: str) -> dict[str, Any]:
    import aiohttp  # noqa: PLC0415

    n = args.households
    connector = aiohttp.TCPConnector(limit=args.connections)
    async with aiohttp.ClientSession(connector=connector) as http:
        await _wait_ready(http, url)
        async with http.get(f"{url}/api/v1/grid") as resp:
            info = await resp.json()
        grid_id = info["grid"]
        minutes = info["interval_minutes"]
        async with http.post(
            f"{url}/api/v1/operator/invitations",
            json={"count": n},
            headers={"Authorization": f"Bearer {token}"},
        ) as resp:
            data = await resp.json()
            if resp.status != 201:
                raise SystemExit(f"cannot issue invitations: {data}")
            codes = [i["code"] for i in data["invitations"]] if n > 1 else [data["code"]]
        keys = [KeyPair.generate() for _ in range(n)]
        seq0 = time.time_ns() // 1_000_000

        def signed(i: int, step: int, body: Body) -> bytes:
            now = datetime.now(UTC).replace(microsecond=0)
            return json.dumps(sign(keys[i], grid_id, seq0 + step, body, ts=now)).encode()

        setup = [signed(i, 1, Join(codes[i], f"Household {i}")) for i in range(n)]
        await _post_all(http, f"{url}/api/v1/participants", setup, args.connections)
        assets = Assets(
            (SourceDecl("pv", "Roof", SourceKind.SOLAR, 8_000),),
            (MeterDecl("main", "Main meter", 20_000),),
        )
        await _post_all(
            http,
            f"{url}/api/v1/assets",
            [signed(i, 2, assets) for i in range(n)],
            args.connections,
        )
        t = interval_start(datetime.now(UTC), minutes)
        reports = [
            signed(
                i,
                3,
                Readings((Reading(t, "pv", 100 + i % 900), Reading(t, "main", 200 + i % 700))),
            )
            for i in range(n)
        ]
        started = time.perf_counter()
        latencies, errors = await _post_all(
            http, f"{url}/api/v1/readings", reports, args.connections
        )
        seconds = time.perf_counter() - started
    ms = sorted(x * 1000 for x in latencies)
    return {
        "benchmark": "ingest",
        "households": n,
        "database": (args.database_url or "sqlite").split("://")[0] if not args.url else "remote",
        "workers": args.workers,
        "connections": args.connections,
        "reports": len(ms),
        "errors": errors,
        "seconds": round(seconds, 3),
        "reports_per_s": round(len(ms) / seconds, 1) if seconds else None,
        "p50_ms": round(statistics.median(ms), 2) if ms else None,
        "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 2) if ms else None,
    }


async def _wait_ready(http: Any, url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            async with http.get(f"{url}/api/v1/health") as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit(f"grid server at {url} did not become ready")


async def _post_all(
    http: Any, url: str, bodies: list[bytes], connections: int
) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    queue = iter(bodies)
    headers = {"Content-Type": "application/json"}

    async def worker() -> None:
        nonlocal errors
        for body in queue:
            t0 = time.perf_counter()
            async with http.post(url, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1
                    if errors <= 3:
                        print(f"{resp.status}: {await resp.text()}", file=sys.stderr)
                    continue
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker() for _ in range(connections)))
    return latencies, errors

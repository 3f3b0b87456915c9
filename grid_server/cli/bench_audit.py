"""``p2p-grid bench audit``: how fast ``p2p-grid audit verify`` replays a large log.

Builds (unless ``--reuse`` finds one) a realistic history with the grid's own
code, in process: H households join and declare a solar source and a meter;
then, interval after interval, every household reports its two meters in one
signed envelope and every sixteenth one places an order three intervals ahead; the
interval cycle clears, settles, issues daily statements and closes the
interval roots, until the log holds ``--entries`` entries. Envelopes go
straight to the group-commit writer (no HTTP), so building a million entries
takes minutes, not hours.

Then it runs the full verification (chain, roots, every signature on
``--workers`` processes, every table) and prints one JSON line: entries,
envelopes, seconds, entries_per_s, envelopes_per_s, build_seconds, ok.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from grid_server.config import GridConfig, Settings
from grid_server.domain.clock import ManualClock
from grid_server.service.audit_verify import verify_log
from grid_server.service.wiring import Grid, build_grid
from grid_server.storage.db import Database
from grid_server.storage.schema import log_entries
from p2p_energy_client.crypto import KeyPair, b64encode
from p2p_energy_client.protocol import (
    Assets,
    Body,
    Envelope,
    Header,
    Join,
    MeterDecl,
    Orders,
    OrderSpec,
    Payload,
    Reading,
    Readings,
    Side,
    SourceDecl,
    SourceKind,
    canonical_json,
)

START = datetime(2026, 1, 5, 0, 2, tzinfo=UTC)
CHUNK = 2_000  # envelopes submitted together (the writer batches them)


def register(benchmarks: Any) -> None:
    parser = benchmarks.add_parser(
        "audit", help="entries per second of p2p-grid audit verify", description=__doc__
    )
    parser.add_argument("--entries", type=int, default=1_000_000, help="log size to build")
    parser.add_argument("--households", type=int, default=2_000, help="households")
    parser.add_argument("--database-url", help="database to build in (default: SQLite, temp)")
    parser.add_argument("--reuse", action="store_true", help="verify the database as it is")
    parser.add_argument("--workers", type=int, help="signature processes (default: cores)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--incremental",
        action="store_true",
        help="also time a second run that trusts the first run's checkpoint",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.database_url:
        result = asyncio.run(_bench(args, args.database_url))
    else:
        with tempfile.TemporaryDirectory(prefix="p2p-bench-audit-") as folder:
            result = asyncio.run(_bench(args, f"sqlite:///{folder}/grid.db"))
    print(json.dumps(result))
    return 0 if result["ok"] else 1


async def _bench(args: argparse.Namespace, url: str) -> dict[str, Any]:
    build_seconds = 0.0
    existing = await _entries(url)
    if not (args.reuse and existing):
        started = time.perf_counter()
        await build(url, entries=args.entries, households=args.households, seed=args.seed)
        build_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="p2p-bench-audit-cp-") as folder:
        checkpoint = Path(folder) / "checkpoint.json"
        cpu_before = _cpu_seconds()
        report = await verify_log(url, workers=args.workers, checkpoint=checkpoint)
        cpu = _cpu_seconds() - cpu_before
        again = None
        if args.incremental and report.ok:
            cpu_before = _cpu_seconds()
            again = await verify_log(url, workers=args.workers, checkpoint=checkpoint)
            again_cpu = _cpu_seconds() - cpu_before
    incremental = {}
    if again is not None:
        incremental = {
            "incremental_seconds": round(again.seconds, 2),
            "incremental_cpu_seconds": round(again_cpu, 1),
            "incremental_entries_per_s": round(again.entries_per_second),
            "incremental_ok": again.ok,
        }
    return {
        "benchmark": "audit",
        "database": url.split(":", 1)[0],
        "entries": report.entries,
        "envelopes": report.envelopes,
        "roots": report.roots,
        "intervals": report.intervals_compared,
        "workers": args.workers,
        "seconds": round(report.seconds, 2),
        # CPU of this process and its signature workers: on a busy machine,
        # entries / (cpu_seconds / cores) estimates the time with the cores free.
        "cpu_seconds": round(cpu, 1),
        "entries_per_s": round(report.entries_per_second),
        "envelopes_per_s": round(report.envelopes / report.seconds) if report.seconds else 0,
        "build_seconds": round(build_seconds, 1),
        "ok": report.ok,
        "problem": None if report.problem is None else str(report.problem),
        **incremental,
    }


def _cpu_seconds() -> float:
    """User + system CPU of this process and of its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


async def _entries(url: str) -> int:
    db = Database(url)
    try:
        async with db.read() as conn:
            return int(await conn.scalar(select(func.count()).select_from(log_entries)) or 0)
    except Exception:  # no schema yet
        return 0
    finally:
        await db.dispose()


def _envelope(
    keys: KeyPair, grid: str, seq: int, body: Body, ts: datetime
) -> tuple[bytes, Envelope]:
    header = Header(grid, keys.address, seq, ts)
    payload = Payload(header, body)
    wire_payload = payload.to_wire()
    signature = keys.sign(canonical_json(wire_payload))
    wire = {
        "payload": wire_payload,
        "public_key": keys.public_key_b64,
        "signature": b64encode(signature),
    }
    raw = json.dumps(wire, separators=(",", ":")).encode()
    return raw, Envelope(payload, keys.public_key, signature, wire)


async def build(url: str, *, entries: int, households: int, seed: int) -> None:
    """A grid history of about ``entries`` log entries (see the module doc)."""
    config = GridConfig(
        id="bench-grid",
        name="Audit benchmark grid",
        settlement_window_seconds=900,
        order_horizon_seconds=6 * 3600,
    )
    settings = Settings(
        database_url=url,
        grid=config,
        run_cycle=False,
        writer_max_batch=1024,
        # A throwaway key for the grid's ledger account (no key file is written).
        ledger_key=KeyPair.generate().seed_hex,
    )
    clock = ManualClock(START)
    grid = build_grid(settings, clock)
    await grid.open()
    grid.writer.start()
    rng = random.Random(seed)
    try:
        keys = [KeyPair.generate() for _ in range(households)]
        send = _sender(grid, keys, config.id, clock)
        codes = await grid.operator.create_invitations(households)
        await send([(i, Join(codes[i].code, f"House {i}")) for i in range(households)])
        assets = Assets(
            (SourceDecl("pv", "Roof", SourceKind.SOLAR, 6_000),),
            (MeterDecl("main", "Main", 12_000),),
        )
        await send([(i, assets) for i in range(households)])
        schedule = grid.schedule
        head = 0
        while head < entries:
            t = schedule.start_of(clock.now())
            clock.set(t + schedule.length + timedelta(seconds=30))
            await send(_interval_items(t, schedule.length, households, rng))
            await grid.cycle.run_due()
            async with grid.db.read() as conn:
                head = int(await conn.scalar(select(func.max(log_entries.c.seq))) or 0)
        clock.advance(minutes=30)
        await grid.cycle.run_due()
    finally:
        await grid.writer.drain()
        await grid.db.dispose()


def _sender(
    grid: Grid, keys: list[KeyPair], grid_id: str, clock: ManualClock
) -> Callable[[list[tuple[int, Body]]], Awaitable[None]]:
    """Sends bodies signed by household ``index`` in order, CHUNK at a time; refusals raise."""
    seqs = dict.fromkeys(range(len(keys)), 0)

    async def send(items: list[tuple[int, Body]]) -> None:
        now = clock.now().replace(microsecond=0)
        built = []
        for index, body in items:
            seqs[index] += 1
            built.append(_envelope(keys[index], grid_id, seqs[index], body, now))
        for start in range(0, len(built), CHUNK):
            outcomes = await asyncio.gather(
                *(grid.writer.submit(raw, env) for raw, env in built[start : start + CHUNK])
            )
            bad = [o for o in outcomes if o.status != 200]
            if bad:
                raise RuntimeError(f"the grid refused: {bad[0].body[:200]!r}")

    return send


def _interval_items(
    t: datetime, length: timedelta, households: int, rng: random.Random
) -> list[tuple[int, Body]]:
    """One interval's readings from every household, and an order from every 16th."""
    items: list[tuple[int, Body]] = []
    for i in range(households):
        pv = rng.randint(0, 1_400)
        items.append(
            (i, Readings((Reading(t, "pv", pv), Reading(t, "main", rng.randint(50, 900)))))
        )
        if i % 16 == 0:
            side, price = (Side.SELL, "0.1200") if i % 32 == 0 else (Side.BUY, "0.2600")
            spec = OrderSpec("o", side, rng.randint(100, 1_000), price)
            items.append((i, Orders(t + 3 * length, (spec,))))
    return items


__all__ = ["build", "register", "run"]

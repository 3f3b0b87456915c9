"""``p2p-grid audit verify | roots | receipt``: check the log, list roots, show a receipt.

``verify`` exits 0 with a summary when the log and the tables agree, and 1
with the first inconsistency (log entry, table, row, what differs)
otherwise; 2 on usage errors. See :mod:`grid_server.service.audit_verify`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from grid_server.config import Settings
from grid_server.service.audit_verify import VerifyReport, verify_log
from grid_server.storage import audit_store
from grid_server.storage.db import Database
from p2p_energy_client.ledger.iota.ledger import NETWORK_URLS, IotaNetwork
from p2p_energy_client.protocol import LedgerKind
from p2p_energy_client.units import UnitError, parse_utc

from .locate import EXIT_NO_GRID, add_common, existing_settings

EXIT_INCONSISTENT = 1
EXIT_USAGE = 2


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "audit", help="verify the audit log, list interval roots, show receipts"
    )
    commands = parser.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)

    verify = commands.add_parser(
        "verify",
        help="replay the log: chain, roots, signatures, and that the tables are what it implies",
        description=(
            "Replay the hash-chained log (or a range of it): links and hashes, interval "
            "Merkle roots and anchors, every envelope's signature (on all cores), and, for the "
            "whole log, that every table is exactly what the log implies. Exit 0 and a summary "
            "when all agrees, 1 and the first inconsistency otherwise."
        ),
    )
    add_common(verify)
    verify.add_argument("--grid", help="the grid's id (when the database holds several)")
    verify.add_argument("--since", help="from the interval containing this UTC time")
    verify.add_argument("--until", help="to the interval containing this UTC time")
    verify.add_argument("--from-seq", type=int, help="first log entry")
    verify.add_argument("--to-seq", type=int, help="last log entry")
    verify.add_argument("--workers", type=int, help="signature worker processes (default: cores)")
    verify.add_argument("--no-state", action="store_true", help="skip the table comparison")
    verify.add_argument(
        "--node", help="IOTA node to check anchors on (default: the grid's, with the IOTA ledger)"
    )
    verify.add_argument(
        "--anchors",
        choices=("latest", "all", "none"),
        default="latest",
        help="anchors checked on chain: the latest (it covers the whole log), all, none",
    )
    verify.add_argument(
        "--checkpoint",
        type=Path,
        help="file of the last fully verified entry: signatures before it are not checked "
        "again (if its chain hash still matches); rewritten after a successful run",
    )
    verify.add_argument(
        "--from-checkpoint",
        action="store_true",
        help="start at the --checkpoint (from its interval root's range), not at entry 1: "
        "chain, roots and signatures of what is new, in time proportional to it; no table "
        "comparison (the whole log, the first time)",
    )
    verify.add_argument("--json", action="store_true", help="print the summary as JSON")
    verify.add_argument(
        "--no-record",
        action="store_true",
        help="do not record the result in the database (the dashboard shows the last one)",
    )
    verify.set_defaults(func=run_verify)

    roots = commands.add_parser("roots", help="list interval Merkle roots and their anchors")
    add_common(roots)
    roots.add_argument("--since", help="intervals ending after this UTC time")
    roots.add_argument("--until", help="intervals beginning before this UTC time")
    roots.add_argument("--from-seq", type=int, help="roots from this log entry on")
    roots.add_argument("--limit", type=int, default=100)
    roots.set_defaults(func=run_roots)

    receipt = commands.add_parser("receipt", help="the receipt of any log entry (operator view)")
    add_common(receipt)
    receipt.add_argument("seq", type=int, help="the log entry")
    receipt.set_defaults(func=run_receipt)


def _time(text: str | None, name: str) -> Any:
    if text is None:
        return None
    try:
        return parse_utc(text)
    except UnitError as exc:
        raise SystemExit(f"--{name}: {exc}") from exc


def run_verify(args: argparse.Namespace) -> int:
    settings = existing_settings(args, grid_id=args.grid, any_grid=True)
    if settings is None:
        return EXIT_NO_GRID
    try:
        report = asyncio.run(
            verify_log(
                settings.database_url,
                grid=args.grid,
                from_seq=args.from_seq,
                to_seq=args.to_seq,
                since=_time(args.since, "since"),
                until=_time(args.until, "until"),
                workers=args.workers,
                check_state=not args.no_state,
                node=args.node or _grid_node(settings),
                anchors=args.anchors,
                checkpoint=args.checkpoint,
                from_checkpoint=args.from_checkpoint,
            )
        )
    except ValueError as exc:
        print(f"p2p-grid audit verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.no_record:
        asyncio.run(record(settings.database_url, report))
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(describe(report))
    return 0 if report.ok else EXIT_INCONSISTENT


async def record(database_url: str, report: VerifyReport) -> None:
    """Keep the result for the dashboard (``audit_verifications``; not a log entry)."""
    db = Database(database_url)
    try:
        async with db.write() as conn:
            await audit_store.record_verification(
                conn,
                report.grid,
                ok=report.ok,
                first_seq=report.first_seq,
                last_seq=report.last_seq,
                entries=report.entries,
                state_checked=report.state_checked,
                problem=None if report.problem is None else str(report.problem),
                seconds=report.seconds,
                at=datetime.now(UTC),
            )
    finally:
        await db.dispose()


def _grid_node(settings: Settings) -> str | None:
    ledger = settings.grid.ledger
    if LedgerKind(ledger.kind) is not LedgerKind.IOTA:
        return None
    if ledger.iota.url is not None:
        return ledger.iota.url
    if ledger.iota.network is None:
        return None
    return NETWORK_URLS[IotaNetwork(ledger.iota.network)]


def describe(report: VerifyReport) -> str:
    lines = []
    if report.problem is None:
        tables = (
            f"; the tables match the log ({report.intervals_compared} settled intervals compared)"
            if report.state_checked
            else ""
        )
        lines.append(
            f"OK: grid {report.grid}, entries {report.first_seq}–{report.last_seq} "
            f"({report.entries} entries, {report.envelopes} signed envelopes "
            f"({report.signatures_checked} signatures checked), {report.roots} "
            f"roots, {report.anchors} anchors, {report.anchors_checked_on_chain} of them "
            f"confirmed on IOTA) in {report.seconds:.1f} s "
            f"({report.entries_per_second:,.0f} entries/s){tables}"
        )
    else:
        lines.append(f"INCONSISTENT: {report.problem}")
        lines.append(
            f"checked {report.entries} entries from {report.first_seq} in {report.seconds:.1f} s"
        )
    lines.extend(f"note: {note}" for note in report.notes)
    return "\n".join(lines)


def run_roots(args: argparse.Namespace) -> int:
    settings = existing_settings(args)
    if settings is None:
        return EXIT_NO_GRID

    async def go() -> list[dict[str, Any]]:
        db = Database(settings.database_url)
        try:
            async with db.read() as conn:
                found = await audit_store.roots_between(
                    conn,
                    settings.grid.id,
                    since=_time(args.since, "since"),
                    until=_time(args.until, "until"),
                    from_seq=args.from_seq,
                    limit=args.limit,
                )
        finally:
            await db.dispose()
        return [r.to_wire() for r in found]

    print(json.dumps(asyncio.run(go()), indent=2))
    return 0


def run_receipt(args: argparse.Namespace) -> int:
    settings = existing_settings(args)
    if settings is None:
        return EXIT_NO_GRID

    async def go() -> dict[str, Any] | None:
        db = Database(settings.database_url)
        try:
            async with db.read() as conn:
                found = await audit_store.entry_header(conn, settings.grid.id, args.seq)
                if found is None:
                    return None
                receipt = await audit_store.receipt(conn, settings.grid.id, found[0])
        finally:
            await db.dispose()
        return receipt.to_wire()

    result = asyncio.run(go())
    if result is None:
        print(f"no log entry {args.seq}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(result, indent=2))
    return 0

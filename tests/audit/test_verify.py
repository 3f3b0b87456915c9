"""``p2p-grid audit verify``: an honest database verifies; every kind of tampering is caught.

One grid history is built per database backend, then each test edits a copy
the way someone with access to the database could and checks that
verification names the first inconsistency precisely.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_socket
from sqlalchemy import select

from grid_server.cli.main import main
from grid_server.service.audit_verify import read_checkpoint, verify_log, write_checkpoint
from grid_server.storage import schema
from grid_server.storage.db import Database
from grid_server.storage.schema import audit_verifications
from p2p_energy_client.protocol import canonical_json
from tests.support.audit_scenario import Surgeon, populate, sqlite_clone
from tests.support.grid_server import POSTGRES_ENV, PostgresDatabases, sqlite_url


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def history(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_pool: PostgresDatabases | None,
) -> Iterator[tuple[str, PostgresDatabases | None]]:
    pytest_socket.enable_socket()
    pytest_socket.socket_allow_hosts(["127.0.0.1"])
    if request.param == "sqlite":
        url = sqlite_url(tmp_path_factory.mktemp("history"))
        asyncio.run(populate(url))
        yield url, None
        return
    if pg_pool is None:
        if os.environ.get("CI"):
            pytest.fail(f"{POSTGRES_ENV} must be set in CI")
        pytest.skip(f"set {POSTGRES_ENV} to run the PostgreSQL tests")
    url = asyncio.run(pg_pool.new())
    asyncio.run(populate(url))
    yield url, pg_pool
    asyncio.run(pg_pool.drop(url))


@pytest.fixture
async def surgeon(
    history: tuple[str, PostgresDatabases | None], tmp_path: Path
) -> AsyncIterator[Surgeon]:
    url, pool = history
    if pool is None:
        clone = sqlite_clone(url, tmp_path)
    else:
        name = f"{pool.prefix}_c{secrets.token_hex(3)}"
        source = url.rpartition("/")[2]
        await pool._admin(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
        clone = pool._url(name)
        pool.created.append(name)
    doctor = Surgeon(clone)
    doctor.url = clone  # type: ignore[attr-defined]
    try:
        yield doctor
    finally:
        await doctor.close()
        if pool is not None:
            await pool.drop(clone)


async def verify(surgeon: Surgeon, **options: object) -> tuple[bool, str]:
    report = await verify_log(surgeon.url, workers=0, **options)  # type: ignore[attr-defined, arg-type]
    return report.ok, "" if report.problem is None else str(report.problem)


async def test_an_honest_history_verifies(surgeon: Surgeon) -> None:
    report = await verify_log(surgeon.url, workers=0)  # type: ignore[attr-defined]
    assert report.ok, report.problem
    assert report.state_checked
    assert report.intervals_compared >= 6
    assert report.roots >= 8 and report.envelopes > 50
    assert set(report.kinds) >= {
        "envelope",
        "participant",
        "operator",
        "market_result",
        "settlement",
        "statement",
        "root",
        "payment",
        "payout",
        "ledger",
    }
    assert not [n for n in report.notes if "not replayed" in n and "envelope" in n], report.notes
    # A range checks the chain, the roots and the signatures, not the tables.
    part = await verify_log(surgeon.url, workers=0, from_seq=40, to_seq=90)  # type: ignore[attr-defined]
    assert part.ok and not part.state_checked and part.entries == 51


def test_the_command_line(
    surgeon: Surgeon, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = surgeon.url  # type: ignore[attr-defined]
    assert main(["audit", "verify", "--database-url", url, "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: grid test-grid, entries 1–")
    assert "entries/s" in out and "the tables match the log" in out
    # The daily run: the whole log the first time, then from the checkpoint on.
    daily = ["audit", "verify", "--database-url", url, "--no-record", "--json"]
    daily += ["--checkpoint", str(tmp_path / "cp.json"), "--from-checkpoint"]
    assert main(daily) == 0
    assert json.loads(capsys.readouterr().out)["first_seq"] == 1
    assert main(daily) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["first_seq"] > 1 and again["signatures_checked"] == 0
    # The result is recorded for the dashboard (unless --no-record).
    assert main(["audit", "verify", "--database-url", url, "--no-state", "--no-record"]) == 0
    rows = asyncio.run(_verifications(url))
    assert [(r.ok, r.first_seq, r.state_checked, r.problem) for r in rows] == [
        (True, 1, True, None)
    ]


async def _verifications(url: str) -> list[Any]:
    db = Database(url)
    try:
        async with db.read() as conn:
            return list((await conn.execute(select(audit_verifications))).all())
    finally:
        await db.dispose()


async def test_the_log_refuses_updates_and_deletes(surgeon: Surgeon) -> None:
    for statement in (
        "UPDATE log_entries SET kind = 'x' WHERE seq = 3",
        "DELETE FROM log_entries WHERE seq = 3",
        "UPDATE audit_roots SET created_at = created_at WHERE seq > 0",
        "DELETE FROM audit_roots",
    ):
        with pytest.raises(Exception, match="append-only"):
            await surgeon.run(statement)


async def test_a_changed_reading(surgeon: Surgeon) -> None:
    (row,) = await surgeon.rows(
        "SELECT r.energy_wh, r.envelope, p.address FROM readings r "
        "JOIN participants p ON p.id = r.participant_id WHERE r.asset_id = 'pv' "
        "ORDER BY r.envelope LIMIT 1"
    )
    await surgeon.run(
        "UPDATE readings SET energy_wh = energy_wh + 1 WHERE envelope = :e AND asset_id = 'pv'",
        e=row.envelope,
    )
    ok, problem = await verify(surgeon)
    assert not ok
    assert problem.startswith(f"log entry {row.envelope}: readings ")
    assert f"({row.address}, pv): energy_wh is {row.energy_wh + 1} in the table" in problem
    assert f"the log says {row.energy_wh}" in problem


async def test_a_deleted_entry(surgeon: Surgeon) -> None:
    await surgeon.drop_triggers("log_entries")
    await surgeon.run("DELETE FROM log_entries WHERE seq = 30")
    ok, problem = await verify(surgeon)
    assert (ok, problem) == (False, "log entry 30: log_entries seq 30: is missing")


async def test_reordered_entries(surgeon: Surgeon) -> None:
    await surgeon.drop_triggers("log_entries")
    await surgeon.run(
        "UPDATE log_entries SET seq = -1 WHERE seq = 40",
        "UPDATE log_entries SET seq = 40 WHERE seq = 41",
        "UPDATE log_entries SET seq = 41 WHERE seq = -1",
    )
    ok, problem = await verify(surgeon)
    assert not ok
    assert problem.startswith("log entry 40: log_entries seq 40")
    assert "does not link" in problem or "does not match" in problem


async def test_a_swapped_signature_even_with_the_chain_recomputed(surgeon: Surgeon) -> None:
    envelopes = await surgeon.rows(
        "SELECT seq, body FROM log_entries WHERE kind = 'envelope' ORDER BY seq LIMIT 12"
    )
    victim, donor = envelopes[10], envelopes[11]
    forged = json.loads(bytes(victim.body))
    forged["signature"] = json.loads(bytes(donor.body))["signature"]
    body = json.dumps(forged, separators=(",", ":")).encode()
    await surgeon.drop_triggers("log_entries")
    await surgeon.run("UPDATE log_entries SET body = :b WHERE seq = :s", b=body, s=victim.seq)
    await surgeon.run("UPDATE envelopes SET raw = :b WHERE log_seq = :s", b=body, s=victim.seq)
    await surgeon.rewrite_chain(victim.seq)  # hashes and roots made consistent again
    ok, problem = await verify(surgeon)
    assert not ok
    assert problem.startswith(f"log entry {victim.seq}: log_entries seq {victim.seq} (envelope)")
    assert "bad_signature" in problem


async def test_a_rewritten_root(surgeon: Surgeon) -> None:
    (root,) = await surgeon.rows("SELECT seq FROM audit_roots ORDER BY seq LIMIT 1 OFFSET 2")
    await surgeon.drop_triggers("audit_roots")
    await surgeon.run("UPDATE audit_roots SET root = :r WHERE seq = :s", r=bytes(32), s=root.seq)
    ok, problem = await verify(surgeon)
    assert (ok, problem) == (
        False,
        f"log entry {root.seq}: audit_roots seq {root.seq}: differs from the root entry",
    )
    # Rewriting the root entry in the log instead breaks its hash.
    await surgeon.run(
        "UPDATE audit_roots SET root = (SELECT root FROM audit_roots WHERE seq < :s "
        "ORDER BY seq DESC LIMIT 1) WHERE seq = :s",
        s=root.seq,
    )
    await surgeon.drop_triggers("log_entries")
    (entry,) = await surgeon.rows("SELECT body FROM log_entries WHERE seq = :s", s=root.seq)
    body = bytes(entry.body).replace(b'"root":"', b'"root":"00', 1)[:-3] + b'"}'
    await surgeon.run("UPDATE log_entries SET body = :b WHERE seq = :s", b=body, s=root.seq)
    ok, problem = await verify(surgeon)
    assert not ok and problem.startswith(f"log entry {root.seq}: log_entries seq {root.seq}")


async def test_edited_orders_fills_and_statements(surgeon: Surgeon) -> None:
    (order,) = await surgeon.rows(
        "SELECT envelope, order_id FROM orders WHERE side = 'buy' ORDER BY envelope LIMIT 1"
    )
    await surgeon.run(
        "UPDATE orders SET price_ticks = price_ticks + 1 WHERE envelope = :e", e=order.envelope
    )
    ok, problem = await verify(surgeon)
    assert not ok and problem.startswith(f"log entry {order.envelope}: orders ")
    assert "price_ticks is" in problem
    await surgeon.run(
        "UPDATE orders SET price_ticks = price_ticks - 1 WHERE envelope = :e", e=order.envelope
    )
    assert (await verify(surgeon))[0]

    await surgeon.run(
        "UPDATE fills SET filled_wh = filled_wh + 5 WHERE order_id = 'b' AND filled_wh > 0"
    )
    ok, problem = await verify(surgeon)
    assert not ok and " fills " in f" {problem}" and "filled_wh is" in problem
    await surgeon.run(
        "UPDATE fills SET filled_wh = filled_wh - 5 WHERE order_id = 'b' AND filled_wh > 0"
    )

    (statement,) = await surgeon.rows("SELECT id FROM statements ORDER BY id LIMIT 1")
    await surgeon.run(
        "UPDATE statements SET amount_due_micro = amount_due_micro - 1000 WHERE id = :i",
        i=statement.id,
    )
    ok, problem = await verify(surgeon)
    assert not ok and f"statements ({statement.id}): amount_due_micro is" in problem


async def test_rows_no_entry_made(surgeon: Surgeon) -> None:
    (participant,) = await surgeon.rows("SELECT id FROM participants ORDER BY id LIMIT 1")
    (interval,) = await surgeon.rows("SELECT interval_start FROM readings LIMIT 1")
    await surgeon.run(
        "INSERT INTO readings (participant_id, interval_start, asset_id, energy_wh, envelope, "
        "recorded_at, revision) VALUES (:p, :t, 'ghost', 5, 1, :t, 0)",
        p=participant.id,
        t=interval.interval_start,
    )
    ok, problem = await verify(surgeon)
    assert not ok
    assert problem.startswith("no log entry: readings ") and "ghost" in problem


async def test_a_moved_participant(surgeon: Surgeon) -> None:
    await surgeon.run("UPDATE participants SET zone = 'south' WHERE name = 'Bob'")
    ok, problem = await verify(surgeon)
    assert not ok and ": participants (0x" in problem and "zone is 'south' in the table" in problem


async def test_an_edit_after_dropping_the_trigger(surgeon: Surgeon) -> None:
    results = await surgeon.rows(
        "SELECT seq, body FROM log_entries WHERE kind = 'market_result' ORDER BY seq"
    )
    entry = next(r for r in results if b'"filled_wh":' in bytes(r.body))
    await surgeon.drop_triggers("log_entries")
    body = bytes(entry.body).replace(b'"filled_wh":', b'"filled_wh":1', 1)
    await surgeon.run("UPDATE log_entries SET body = :b WHERE seq = :s", b=body, s=entry.seq)
    ok, problem = await verify(surgeon)
    assert (ok, problem.split(":")[0]) == (False, f"log entry {entry.seq}")
    assert "hash does not match" in problem


async def test_a_consistent_rewrite_is_only_caught_by_what_households_kept(
    surgeon: Surgeon,
) -> None:
    """The limit without anchoring: rewrite a grid decision and every hash after it."""
    (entry,) = await surgeon.rows(
        "SELECT seq, ref, body FROM log_entries WHERE kind = 'operator' AND ref = 'south'"
    )
    roots_before = {
        r.seq: bytes(r.root) for r in await surgeon.rows("SELECT seq, root FROM audit_roots")
    }
    record = json.loads(bytes(entry.body))
    record.update(fee="0.0300", fee_ticks=30_000)
    await surgeon.drop_triggers()
    await surgeon.run(
        "UPDATE log_entries SET body = :b WHERE seq = :s", b=canonical_json(record), s=entry.seq
    )
    await surgeon.run("UPDATE zones SET fee = '0.0300', fee_ticks = 30000 WHERE id = 'south'")
    await surgeon.rewrite_chain(entry.seq)
    ok, problem = await verify(surgeon)
    assert ok, problem  # the database alone cannot tell
    roots_after = {
        r.seq: bytes(r.root) for r in await surgeon.rows("SELECT seq, root FROM audit_roots")
    }
    changed = [s for s in roots_before if roots_before[s] != roots_after[s]]
    assert changed  # but every root from there on moved: a household's kept copy disagrees


async def test_edited_payments_and_ledger(surgeon: Surgeon) -> None:
    await surgeon.drop_triggers("payments")
    (payment,) = await surgeon.rows("SELECT tx_id FROM payments ORDER BY id LIMIT 1")
    await surgeon.run(
        "UPDATE payments SET credited = credited + 1 WHERE tx_id = :t", t=payment.tx_id
    )
    ok, problem = await verify(surgeon)
    assert not ok and f"payments ({payment.tx_id}): credited is" in problem
    await surgeon.run(
        "UPDATE payments SET credited = credited - 1 WHERE tx_id = :t", t=payment.tx_id
    )
    (account,) = await surgeon.rows(
        "SELECT address FROM ledger_accounts WHERE balance > 0 ORDER BY address LIMIT 1"
    )
    await surgeon.run(
        "UPDATE ledger_accounts SET balance = balance + 100 WHERE address = :a", a=account.address
    )
    ok, problem = await verify(surgeon)
    assert not ok and f"ledger_accounts ({account.address}): balance is" in problem
    await surgeon.run(
        "UPDATE ledger_accounts SET balance = balance - 100 WHERE address = :a", a=account.address
    )
    await surgeon.run("UPDATE payouts SET state = 'prepared'")
    ok, problem = await verify(surgeon)
    assert not ok and "payouts (" in problem and "state is 'prepared' in the table" in problem


async def test_a_checkpoint_skips_signatures_verified_before(
    surgeon: Surgeon, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "checkpoint.json"
    first = await verify_log(surgeon.url, workers=0, checkpoint=checkpoint)  # type: ignore[attr-defined]
    assert first.ok and first.signatures_checked == first.envelopes
    again = await verify_log(surgeon.url, workers=0, checkpoint=checkpoint)  # type: ignore[attr-defined]
    assert again.ok and again.signatures_checked == 0 and again.state_checked
    # A forgery before the checkpoint, even with every hash recomputed, is caught there.
    envelopes = await surgeon.rows(
        "SELECT seq, body FROM log_entries WHERE kind = 'envelope' ORDER BY seq LIMIT 12"
    )
    victim, donor = envelopes[10], envelopes[11]
    forged = json.loads(bytes(victim.body))
    forged["signature"] = json.loads(bytes(donor.body))["signature"]
    body = json.dumps(forged, separators=(",", ":")).encode()
    await surgeon.drop_triggers("log_entries")
    await surgeon.run("UPDATE log_entries SET body = :b WHERE seq = :s", b=body, s=victim.seq)
    await surgeon.run("UPDATE envelopes SET raw = :b WHERE log_seq = :s", b=body, s=victim.seq)
    await surgeon.rewrite_chain(victim.seq)
    ok, problem = await verify(surgeon, checkpoint=checkpoint)
    assert not ok and "differs from the checkpoint's" in problem


async def _checkpoint_mid_log(surgeon: Surgeon, path: Path) -> tuple[int, int]:
    """A checkpoint in the middle of an interval's range; returns it and the head."""
    roots = await surgeon.rows("SELECT seq, first_seq, last_seq FROM audit_roots ORDER BY seq")
    middle = roots[len(roots) // 2]
    seq = (middle.first_seq + middle.last_seq) // 2
    assert middle.first_seq < seq < middle.last_seq
    done = await verify_log(surgeon.url, workers=0, to_seq=seq, checkpoint=path)  # type: ignore[attr-defined]
    assert done.ok and (read_checkpoint(path) or {}).get("seq") == seq
    (head,) = await surgeon.rows("SELECT max(seq) AS seq FROM log_entries")
    return seq, int(head.seq)


async def test_from_a_checkpoint_only_what_is_new_is_verified(
    surgeon: Surgeon, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "checkpoint.json"
    seq, head = await _checkpoint_mid_log(surgeon, checkpoint)
    # A range that ends before the checkpoint's entry does not use it (nothing was removed).
    earlier = await verify_log(surgeon.url, workers=0, to_seq=seq - 5, checkpoint=checkpoint)  # type: ignore[attr-defined]
    assert earlier.ok, earlier.problem
    checkpoint_seq = (read_checkpoint(checkpoint) or {}).get("seq")
    assert checkpoint_seq == seq - 5  # it verified 1 to seq - 5, and says so
    await _checkpoint_mid_log(surgeon, checkpoint)
    (newer,) = await surgeon.rows(
        "SELECT count(*) AS n FROM log_entries WHERE kind = 'envelope' AND seq > :s", s=seq
    )
    (segment,) = await surgeon.rows(
        "SELECT max(last_seq) + 1 AS start FROM audit_roots WHERE seq <= :s", s=seq
    )
    report = await verify_log(
        surgeon.url,  # type: ignore[attr-defined]
        workers=0,
        checkpoint=checkpoint,
        from_checkpoint=True,
    )
    assert report.ok, report.problem
    # From the start of the checkpoint's root range (so that root is recomputed) to the head.
    assert report.first_seq == segment.start and report.last_seq == head
    assert report.signatures_checked == newer.n and not report.state_checked
    assert (read_checkpoint(checkpoint) or {}).get("seq") == head  # moved on
    # Without a checkpoint file yet, the whole log, tables included, writes one.
    fresh = tmp_path / "fresh.json"
    whole = await verify_log(surgeon.url, workers=0, checkpoint=fresh, from_checkpoint=True)  # type: ignore[attr-defined]
    assert whole.ok and whole.first_seq == 1 and whole.state_checked and read_checkpoint(fresh)
    with pytest.raises(ValueError, match="needs --checkpoint"):
        await verify_log(surgeon.url, from_checkpoint=True)  # type: ignore[attr-defined]


async def test_from_a_checkpoint_a_forgery_on_either_side_is_caught(
    surgeon: Surgeon, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "checkpoint.json"
    seq, _head = await _checkpoint_mid_log(surgeon, checkpoint)
    saved = read_checkpoint(checkpoint)
    assert saved is not None
    envelopes = await surgeon.rows(
        "SELECT seq, body FROM log_entries WHERE kind = 'envelope' ORDER BY seq"
    )
    after = [e for e in envelopes if e.seq > seq]
    before = [e for e in envelopes if e.seq < seq]
    await surgeon.drop_triggers("log_entries")
    # After the checkpoint: a signature taken from another envelope, every hash and root
    # recomputed: the signature check names it.
    victim, donor = after[len(after) // 2], after[len(after) // 2 + 1]
    forged = json.loads(bytes(victim.body))
    forged["signature"] = json.loads(bytes(donor.body))["signature"]
    body = json.dumps(forged, separators=(",", ":")).encode()
    await surgeon.run("UPDATE log_entries SET body = :b WHERE seq = :s", b=body, s=victim.seq)
    await surgeon.run("UPDATE envelopes SET raw = :b WHERE log_seq = :s", b=body, s=victim.seq)
    await surgeon.rewrite_chain(victim.seq)
    ok, problem = await verify(surgeon, checkpoint=checkpoint, from_checkpoint=True)
    assert not ok and f"log entry {victim.seq}: " in problem and "bad_signature" in problem
    # Before the range the run reads at all (entry 2), forged the same way: the chain hash
    # recomputed at the checkpoint's entry differs from the one recorded.
    write_checkpoint(checkpoint, saved["grid"], saved["seq"], bytes.fromhex(saved["hash"]))
    victim, donor = before[1], before[2]
    forged = json.loads(bytes(victim.body))
    forged["signature"] = json.loads(bytes(donor.body))["signature"]
    body = json.dumps(forged, separators=(",", ":")).encode()
    await surgeon.run("UPDATE log_entries SET body = :b WHERE seq = :s", b=body, s=victim.seq)
    await surgeon.run("UPDATE envelopes SET raw = :b WHERE log_seq = :s", b=body, s=victim.seq)
    await surgeon.rewrite_chain(victim.seq)
    ok, problem = await verify(surgeon, checkpoint=checkpoint, from_checkpoint=True)
    assert not ok and "differs from the checkpoint's" in problem, problem


# Every amount settlement, clearing and payment store, as (table, column).
SETTLED_AMOUNTS = [
    ("readings", "energy_wh"),
    ("fills", "filled_wh"),
    ("fills", "price_ticks"),
    ("zone_results", "price_ticks"),
    ("zone_results", "bought_wh"),
    ("zone_results", "sold_wh"),
    ("zone_results", "utility_buy_wh"),
    ("zone_results", "utility_sell_wh"),
    ("zone_results", "flow_to_parent_wh"),
    ("line_items", "energy_wh"),
    ("line_items", "price_ticks"),
    ("line_items", "amount_micro"),
    ("statements", "amount_due_micro"),
    ("statements", "paid_micro"),
    ("statement_terms", "amount_due"),
    ("statement_terms", "paid"),
    ("payments", "received"),
    ("payments", "credited"),
    ("payouts", "amount"),
    ("payout_items", "amount"),
    ("ledger_entries", "amount"),
    ("ledger_accounts", "balance"),
]


@pytest.mark.parametrize(("table", "column"), SETTLED_AMOUNTS)
async def test_a_one_unit_change_to_a_settled_amount(
    surgeon: Surgeon, table: str, column: str
) -> None:
    """One unit more on one row of any stored amount is named by the verifier."""
    key = [c.name for c in schema.metadata.tables[table].primary_key.columns]
    columns = ", ".join(f'"{k}"' for k in key)
    rows = await surgeon.rows(f"SELECT {columns} FROM {table} ORDER BY {columns}")
    assert rows, f"the history has no {table} row to change"
    victim = rows[len(rows) // 2]._mapping
    await surgeon.drop_triggers()
    where = " AND ".join(f'"{k}" = :{k}' for k in key)
    await surgeon.run(f"UPDATE {table} SET {column} = {column} + 1 WHERE {where}", **victim)
    ok, problem = await verify(surgeon)
    assert not ok
    # A keyed row is named with the column that differs; a line item (a multiset:
    # no key of its own) as the logged line the table no longer holds.
    assert f": {table} " in problem or problem.startswith(f"{table} "), problem
    assert f"{column} is" in problem or "is missing from the table" in problem, problem

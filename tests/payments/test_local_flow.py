"""The local ledger end to end over real HTTP: consumers pay, the grid pays producers."""

from __future__ import annotations

import asyncio
import json
import stat
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from grid_server.cli.main import main
from grid_server.config import Settings
from grid_server.service.wiring import build_grid
from grid_server.storage.schema import log_entries, payouts
from p2p_energy_client.household import Asset, Household
from p2p_energy_client.ledger.local import SignedTransfer, check_entry
from p2p_energy_client.ledger.local_client import LocalLedger
from p2p_energy_client.models import Event
from p2p_energy_client.payments import LocalPayer, make_payer
from p2p_energy_client.protocol import ErrorCode, OrderSpec, Payment, ProtocolError, Side, sign
from tests.support.grid_server import OPERATOR_TOKEN, RunningGrid, run_grid_server
from tests.support.grid_server import test_settings as settings_for
from tests.support.market import (
    grid_config,
    issue_statements,
    local_balances,
    only_statement,
    trade,
)

MINTED = 5_000_000  # 5 EUR for each household
FLOAT = 1_000_000  # the operator funds the grid's account for the utility's share


async def _log_count(grid: RunningGrid, kind: str) -> int:
    async with grid.grid.db.read() as conn:
        query = select(func.count()).select_from(log_entries).where(log_entries.c.kind == kind)
        return int(await conn.scalar(query) or 0)


async def _operator(grid: RunningGrid, method: str, path: str, body: object = None) -> object:
    async with httpx.AsyncClient(base_url=grid.url, timeout=10) as http:
        response = await http.request(
            method,
            f"/api/v1/operator{path}",
            json=body,
            headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
        )
    assert response.status_code < 300, response.text
    return response.json()


async def test_consumers_pay_and_the_grid_pays_producers(database_url: str) -> None:
    async with run_grid_server(database_url, grid=grid_config()) as grid:
        payments = grid.grid.payments
        info = await grid.client().grid_info()
        assert (info.ledger_kind, info.ledger_address) == ("local", payments.address)
        seller, buyers, t = await trade(grid, buyers=2)
        for client in (*buyers, seller):
            await _operator(
                grid, "POST", "/ledger/mint", {"address": client.address, "amount": MINTED}
            )
        await _operator(
            grid, "POST", "/ledger/mint", {"address": payments.address, "amount": FLOAT}
        )
        await issue_statements(grid, t)

        # The producer listens to its live stream for the payout.
        events: list[Event] = []

        async def listen() -> None:
            async for event in seller.events():
                events.append(event)
                if event.kind == "payment":
                    return

        listener = asyncio.create_task(listen())

        # Buyer 0 pays through the household routine (the daily cap allows it) ...
        first = buyers[0]
        household = Household(
            first,
            await first.grid_info(),
            zone="root",
            assets=[Asset("main", "meter", 8_000)],
            payer=make_payer(first, info),
        )
        await household.refresh(grid.clock.now())
        assert [s.id for s in household.snapshot(grid.clock.now()).unpaid]
        paid = await household.pay_due(grid.clock.now().date())
        assert len(paid) == 1 and not household.failed_payments
        # ... buyer 1 with the payer directly, twice: the second call pays nothing.
        second = LocalPayer(buyers[1])
        statement = await only_statement(buyers[1])
        tx = await second.pay(statement)
        assert await second.pay(statement) == tx

        bills = [await only_statement(b) for b in buyers]
        for bill in bills:
            assert bill.status == "paid" and bill.paid_micro == bill.amount_due_micro > 0
            assert bill.ledger is not None and bill.ledger.paid == bill.ledger.amount_due
            assert [p.direction for p in bill.payments] == ["in"]

        # The grid pays the producer (once, however often the worker runs).
        report = await grid.grid.payouts.run_once()
        assert len(report.paid) == 1 and not report.unfunded
        again = await grid.grid.payouts.run_once()
        assert not again.paid
        await asyncio.wait_for(listener, 10)
        credit = await only_statement(seller)
        assert credit.amount_due_micro < 0
        assert (credit.status, credit.paid_micro) == ("paid", credit.amount_due_micro)
        (payout,) = credit.payments
        assert payout.direction == "out" and payout.amount == -credit.amount_due_micro
        payment_event = next(e for e in events if e.kind == "payment")
        assert payment_event.data["tx_id"] == payout.tx_id
        assert payment_event.data["statements"] == [{"id": credit.id, "amount": payout.amount}]

        # Everything reconciles to the micro-unit.
        balances = await local_balances(grid)
        due = [b.amount_due_micro for b in bills]
        assert balances[buyers[0].address] == MINTED - due[0]
        assert balances[buyers[1].address] == MINTED - due[1]
        assert balances[seller.address] == MINTED - credit.amount_due_micro
        assert balances[payments.address] == FLOAT + sum(due) + credit.amount_due_micro
        assert sum(balances.values()) == 3 * MINTED + FLOAT
        assert min(balances.values()) >= 0
        verified = await _operator(grid, "GET", "/ledger/verify")
        assert verified["ok"] and verified["entries"] == 4 + 2 + 1  # mints, payments, payout
        # Households can check the ledger entries themselves, and read their wallets.
        ledger = LocalLedger(seller)
        record = await ledger.lookup(payout.tx_id)
        assert record is not None and record.amount == payout.amount
        assert record.sender == payments.address
        entry = await seller.ledger_transaction(payout.tx_id)
        assert entry.sender == payments.address
        assert await ledger.balance() == balances[seller.address]
        wallet = await second.wallet_balance()
        assert wallet.amount == balances[buyers[1].address] and wallet.display_unit == "EUR"
        # The audit log holds every payment, ledger entry and payout step.
        assert await _log_count(grid, "payment") == 2
        assert await _log_count(grid, "ledger") == 7
        assert await _log_count(grid, "payout") == 2  # prepared, done
        summary = await _operator(grid, "GET", "/ledger")
        assert summary["grid_balance"] == balances[payments.address]
        listed = await _operator(grid, "GET", "/payouts")
        assert [(p["tx_id"], p["state"]) for p in listed["payouts"]] == [(payout.tx_id, "done")]  # type: ignore[index]
        assert (await _operator(grid, "POST", "/payouts/run"))["paid"] == []  # type: ignore[index]


async def test_payment_refusals(database_url: str) -> None:
    async with run_grid_server(database_url, grid=grid_config()) as grid:
        payments = grid.grid.payments
        seller, (buyer,), t = await trade(grid)
        await issue_statements(grid, t)
        statement = await only_statement(buyer)
        due = statement.amount_due_micro
        ledger = LocalLedger(buyer)
        grid_address = payments.address

        async def pay(transfer: SignedTransfer, statement_id: str = statement.id) -> ProtocolError:
            with pytest.raises(ProtocolError) as err:
                await buyer.pay(statement_id, transfer=transfer.to_wire())
            return err.value

        # No money yet.
        broke = await ledger.sign_transfer(buyer.keys, grid_address, due, memo=statement.id)
        refused = await pay(broke)
        assert (refused.code, refused.field) == (
            ErrorCode.INSUFFICIENT_FUNDS,
            "payload.transfer.record.amount",
        )
        await payments.mint(buyer.address, 10 * due)
        # Too much, to the wrong address, for another statement, signed by another key.
        too_much = await ledger.sign_transfer(buyer.keys, grid_address, due + 1)
        assert (await pay(too_much)).code is ErrorCode.PAYMENT_INVALID
        elsewhere = await ledger.sign_transfer(buyer.keys, seller.address, due)
        refused = await pay(elsewhere)
        assert (refused.code, refused.field) == (
            ErrorCode.PAYMENT_INVALID,
            "payload.transfer.record.recipient",
        )
        wrong_memo = await ledger.sign_transfer(buyer.keys, grid_address, due, memo="st-other")
        assert (await pay(wrong_memo)).field == "payload.transfer.record.memo"
        forged = SignedTransfer.sign(
            seller.keys, grid="test-grid", recipient=grid_address, amount=due, seq=1
        )
        assert (await pay(forged)).code is ErrorCode.PAYMENT_INVALID
        refused = await pay(broke, (await only_statement(seller)).id)
        assert refused.code is ErrorCode.NOT_FOUND  # another's statement is not found
        assert (
            await pay(broke, (await only_statement(buyer)).id + "x")
        ).code is ErrorCode.NOT_FOUND
        # A partial payment, then the rest.
        part = await ledger.sign_transfer(buyer.keys, grid_address, due // 3, memo=statement.id)
        result = await buyer.pay(statement.id, transfer=part.to_wire())
        assert result.statement.status == "partially_paid"
        assert result.statement.paid_micro == due // 3
        ledger.applied(part)  # (paid with the low-level call: tell the ledger client)
        # The same transfer again in a new envelope: reused.
        assert (await pay(part)).code is ErrorCode.PAYMENT_REUSED
        # The same envelope again: the original answer (idempotent retry).
        envelope = sign(
            buyer.keys,
            "test-grid",
            buyer.last_seq + 1,
            Payment(
                statement.id,
                "local",
                transfer=(
                    await ledger.sign_transfer(
                        buyer.keys, grid_address, due - due // 3, memo=statement.id
                    )
                ).to_wire(),
            ),  # type: ignore[arg-type]
            ts=grid.clock.now().replace(microsecond=0),
        )
        async with httpx.AsyncClient(base_url=grid.url, timeout=10) as http:
            first = await http.post("/api/v1/payments", content=json.dumps(envelope))
            second = await http.post("/api/v1/payments", content=json.dumps(envelope))
        assert first.status_code == second.status_code == 200
        assert first.json() == second.json()
        assert first.json()["statement"]["status"] == "paid"
        # Paid: more is refused, nothing moves.
        extra = await ledger.sign_transfer(buyer.keys, grid_address, 1)
        refused = await pay(extra)
        assert (refused.code, refused.field) == (ErrorCode.PAYMENT_INVALID, "payload.statement")
        balances = await local_balances(grid)
        assert balances[grid_address] == due
        assert balances[buyer.address] == 9 * due
        # The producer's statement cannot be "paid" by the producer.
        credit = await only_statement(seller)
        await payments.mint(seller.address, 1_000)
        give = await LocalLedger(seller).sign_transfer(seller.keys, grid_address, 1)
        with pytest.raises(ProtocolError) as err:
            await seller.pay(credit.id, transfer=give.to_wire())
        assert err.value.code is ErrorCode.PAYMENT_INVALID
        # Minting is for the operator only.
        async with httpx.AsyncClient(base_url=grid.url, timeout=10) as http:
            response = await http.post(
                "/api/v1/operator/ledger/mint", json={"address": buyer.address, "amount": 5}
            )
        assert response.status_code == 401


async def test_transfers_between_households_and_reads(database_url: str) -> None:
    async with run_grid_server(database_url, grid=grid_config()) as grid:
        alice = await grid.member("Alice")
        bob = await grid.member("Bob")
        await grid.grid.payments.mint(alice.address, 1_000)
        ledger = LocalLedger(alice)
        tx = await ledger.transfer(alice.keys, bob.address, 400, memo="thanks")
        assert await ledger.balance() == 600
        assert await LocalLedger(bob).balance() == 400
        record = await LocalLedger(bob).lookup(tx)
        assert record is not None and (record.sender, record.amount, record.memo) == (
            alice.address,
            400,
            "thanks",
        )
        # Another copy of the key moves the sequence on: the next transfer resyncs once.
        other_device = LocalLedger(alice)
        await other_device.transfer(alice.keys, bob.address, 10)
        await ledger.transfer(alice.keys, bob.address, 20)
        assert await ledger.balance() == 570
        # The very same record again (its answer was lost) is that payment, not a new one.
        other_device.forget_seq()
        again = await other_device.sign_transfer(alice.keys, bob.address, 5)
        await alice.ledger_transfer(again.to_wire())
        stale = LocalLedger(alice)
        stale._last_seq = again.record.seq - 1  # it did not see the answer
        assert await stale.transfer(alice.keys, bob.address, 5) == again.tx_id
        assert await ledger.balance() == 565
        # An outsider cannot read the entry or another's account.
        carol = await grid.member("Carol")
        assert await LocalLedger(carol).lookup(tx) is None
        with pytest.raises(ProtocolError) as err:
            await carol.ledger_account(alice.address)
        assert err.value.code is ErrorCode.FORBIDDEN
        # The entries verify offline, chained from the first.
        entries = [await alice.ledger_transaction(tx)]
        assert check_entry(entries[0], "test-grid", bytes.fromhex(entries[0].prev_hash)) is None
        # Stale sequence numbers are refused; a transfer of the same seq can land only once.
        old = SignedTransfer.sign(
            alice.keys, grid="test-grid", recipient=bob.address, amount=1, seq=1
        )
        with pytest.raises(ProtocolError) as err:
            await alice.ledger_transfer(old.to_wire())
        assert (err.value.code, err.value.field) == (
            ErrorCode.PAYMENT_INVALID,
            "payload.transfer.record.seq",
        )


async def test_overdue_statements_and_retail_only(database_url: str) -> None:
    config = grid_config(payment_terms_seconds=3600, overdue_policy="retail_only")
    async with run_grid_server(database_url, grid=config) as grid:
        seller, (buyer,), t = await trade(grid)
        await issue_statements(grid, t)
        statement = await only_statement(buyer)
        assert statement.ledger is not None
        grid.clock.set(statement.ledger.due_at + timedelta(seconds=1))
        listing = await _operator(grid, "GET", "/statements/overdue")
        assert [o["statement"] for o in listing["overdue"]] == [statement.id]  # type: ignore[index]
        assert listing["overdue"][0]["participant"] == buyer.address  # type: ignore[index]
        later = grid.grid.schedule.start_of(grid.clock.now()) + timedelta(hours=1)
        with pytest.raises(ProtocolError) as err:
            await buyer.submit_orders(later, [OrderSpec("b", Side.BUY, 100, "0.2000")])
        assert (err.value.code, err.value.field) == (ErrorCode.OVERDUE, "payload.place[0].side")
        # Selling is not limited; after paying, buying is allowed again.
        await seller.submit_orders(later, [OrderSpec("s", Side.SELL, 100, "0.1000")])
        await grid.grid.payments.mint(buyer.address, statement.amount_due_micro)
        await LocalPayer(buyer).pay(statement)
        assert (await _operator(grid, "GET", "/statements/overdue"))["overdue"] == []
        await buyer.submit_orders(later, [OrderSpec("b", Side.BUY, 100, "0.2000")])


async def test_grid_key_file_and_key_change(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'grid.db'}"
    async with run_grid_server(database, ledger_key=None) as grid:
        address = grid.grid.payments.address
        key_file = tmp_path / "p2p-grid-ledger.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert (await grid.client().grid_info()).ledger_address == address
    async with run_grid_server(database, ledger_key=None) as grid:
        assert grid.grid.payments.address == address  # the same key again
    key_file.chmod(0o644)
    with pytest.raises(Exception, match="readable by others"):
        await build_grid(settings_for(database, ledger_key=None)).payments.open()
    key_file.chmod(0o600)
    other = build_grid(settings_for(database, ledger_key="11" * 32))
    with pytest.raises(Exception, match="belongs to the grid key"):
        await other.payments.open()
    await other.db.dispose()


async def _first_start(database: str) -> None:
    """What the first `p2p-grid serve` on ``database`` does: the grid and its ledger key."""
    grid = build_grid(Settings(database_url=database))
    await grid.open()
    await grid.db.dispose()


def test_cli_mint_balances_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    database = f"sqlite:///{tmp_path / 'grid.db'}"
    address = "0x" + "ab" * 32
    asyncio.run(_first_start(database))
    assert main(["ledger", "mint", address, "12.5", "--database-url", database]) == 0
    assert main(["ledger", "balances", "--database-url", database]) == 0
    assert main(["ledger", "verify", "--database-url", database]) == 0
    out = capsys.readouterr().out
    assert '"balance": 12500000' in out and '"ok": true' in out
    assert main(["ledger", "mint", address, "0.0000001", "--database-url", database]) == 2
    assert main(["ledger", "overdue", "--database-url", database]) == 0
    assert main(["ledger", "pay-producers", "--database-url", database]) == 0


async def test_payout_count(database_url: str) -> None:
    """Small amounts accumulate below the threshold; the float policy pays at once."""
    config = grid_config(payout_threshold_micro=1_000_000_000, payout_policy="float")
    async with run_grid_server(database_url, grid=config) as grid:
        payments = grid.grid.payments
        seller, (buyer,), t = await trade(grid)
        await issue_statements(grid, t)
        await payments.mint(payments.address, 10_000_000)
        report = await grid.grid.payouts.run_once()
        assert not report.paid  # below the threshold: it waits
        async with grid.grid.db.read() as conn:
            assert await conn.scalar(select(func.count()).select_from(payouts)) == 0
    config = grid_config(payout_policy="float")
    async with run_grid_server(database_url, grid=config) as grid:
        report = await grid.grid.payouts.run_once()
        assert len(report.paid) == 1  # float: the buyer has not paid, the producer is paid
        assert (await only_statement(grid.client(seller.keys))).status == "paid"
        assert (await only_statement(grid.client(buyer.keys))).status == "issued"

"""The same flow with the IOTA Rebased ledger, against the stand-in node on loopback."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from fractions import Fraction
from typing import Any

import pytest

from grid_server.service.payouts import PayoutWorker
from p2p_energy_client.grid_client import GridClient
from p2p_energy_client.household import Asset, Household
from p2p_energy_client.ledger.iota import (
    IotaConfig,
    IotaLedger,
    TransferInDoubt,
)
from p2p_energy_client.models import Statement
from p2p_energy_client.payments import IotaPayer, make_payer
from p2p_energy_client.protocol import ErrorCode, ProtocolError
from tests.support.grid_server import RunningGrid, run_grid_server
from tests.support.grid_server import test_ledger_key as ledger_key_for
from tests.support.iota_node import Fault, StandInIotaNode
from tests.support.market import grid_config, issue_statements, only_statement, trade

IOTA = 10**9
RATE = Fraction(4000)  # 1 IOTA = 0.25 EUR: 4,000 nanos per micro-EUR
FAST: dict[str, Any] = {
    "request_timeout": 2.0,
    "execute_timeout": 0.3,
    "submit_deadline": 1.0,
    "checkpoint_timeout": 1.0,
    "poll_interval": 0.01,
}
GAS_RESERVE = 50_000_000


def iota_config(node: StandInIotaNode, **ledger: Any) -> Any:
    return grid_config(
        kind="iota",
        iota_price="0.25",
        iota={"url": node.url, "public_url": node.url, "gas_reserve_nanos": GAS_RESERVE, **FAST},
        **ledger,
    )


def household_ledger(node: StandInIotaNode) -> IotaLedger:
    return IotaLedger(IotaConfig(url=node.url, **FAST))


@asynccontextmanager
async def iota_grid(
    database_url: str, node: StandInIotaNode, **ledger: Any
) -> AsyncIterator[RunningGrid]:
    async with run_grid_server(database_url, grid=iota_config(node, **ledger)) as grid:
        yield grid


def received_by(node: StandInIotaNode, address: str) -> list[int]:
    """What each transaction on the node added to ``address``."""
    out = []
    for tx in node.transactions.values():
        for change in tx.balance_changes:
            if change["owner"]["AddressOwner"] == address and int(change["amount"]) > 0:
                out.append(int(change["amount"]))
    return out


def change_of(node: StandInIotaNode, digest: str, address: str) -> int:
    return sum(
        int(c["amount"])
        for c in node.transactions[digest].balance_changes
        if c["owner"]["AddressOwner"] == address
    )


async def _setup(
    grid: RunningGrid, node: StandInIotaNode, *, buyers: int = 1, grid_float: int = 2 * IOTA
) -> tuple[GridClient, list[GridClient], list[Statement], Statement]:
    seller, clients, t = await trade(grid, buyers=buyers)
    for client in clients:
        node.mint(client.address, 10 * IOTA)
    node.mint(grid.grid.payments.address, grid_float)
    await issue_statements(grid, t)
    bills = [await only_statement(c) for c in clients]
    return seller, clients, bills, await only_statement(seller)


async def test_iota_statement_paid_and_producer_paid_out(
    database_url: str, iota_node: StandInIotaNode
) -> None:
    async with iota_grid(database_url, iota_node) as grid:
        payments = grid.grid.payments
        grid_address = payments.address
        seller, (buyer,), (bill,), credit = await _setup(grid, iota_node)
        info = await buyer.grid_info()
        assert (info.ledger_kind, info.ledger_address) == ("iota", grid_address)
        assert info.ledger_node_url == iota_node.url
        # The statement carries the rate and the amount in nanos, recorded at issue.
        assert bill.ledger is not None and bill.ledger.unit == "nanos"
        assert bill.ledger.rate == "4000"
        assert bill.ledger.amount_due == math.ceil(bill.amount_due_micro * RATE)
        assert credit.ledger is not None
        assert credit.ledger.amount_due == -math.floor(-credit.amount_due_micro * RATE)

        saved: list[dict[str, Any]] = []

        async def save(state: dict[str, Any]) -> None:
            saved.append(state)

        payer = make_payer(buyer, info, iota=IotaConfig(url=iota_node.url, **FAST), save=save)
        assert isinstance(payer, IotaPayer)
        household = Household(
            buyer,
            info,
            zone="root",
            assets=[Asset("main", "meter", 8_000)],
            payer=payer,
        )
        await household.refresh(grid.clock.now())
        assert await household.pay_due(grid.clock.now().date()) == [bill.id]
        digest = household.paid_tx(bill.id)
        assert digest is not None and digest in iota_node.transactions
        assert saved[0]["pending"][bill.id]["digest"] == digest  # stored before it was sent
        assert saved[-1] == {"pending": {}}
        paid = await only_statement(buyer)
        assert (paid.status, paid.paid_micro) == ("paid", paid.amount_due_micro)
        assert [(p.tx_id, p.direction) for p in paid.payments] == [(digest, "in")]
        assert change_of(iota_node, digest, grid_address) == bill.ledger.amount_due
        buyer_paid = -change_of(iota_node, digest, buyer.address)  # the amount and its gas
        assert iota_node.balance_of(buyer.address) == 10 * IOTA - buyer_paid
        assert 0 < buyer_paid - bill.ledger.amount_due < GAS_RESERVE
        # Paying again pays nothing: the grid says it is paid, with this digest.
        assert await payer.pay(bill) == digest
        assert len(received_by(iota_node, grid_address)) == 1  # one payment on chain

        grid_before = iota_node.balance_of(grid_address)
        report = await grid.grid.payouts.run_once()
        assert len(report.paid) == 1, report
        (payout,) = report.paid
        owed = -credit.ledger.amount_due
        assert iota_node.balance_of(seller.address) == owed  # to the nano
        assert received_by(iota_node, seller.address) == [owed]
        gas = -change_of(iota_node, payout["tx_id"], grid_address) - owed
        assert 0 < gas < GAS_RESERVE
        assert iota_node.balance_of(grid_address) == grid_before - owed - gas
        done = await only_statement(seller)
        assert (done.status, done.paid_micro) == ("paid", done.amount_due_micro)
        assert [(p.tx_id, p.direction, p.amount) for p in done.payments] == [
            (payout["tx_id"], "out", owed)
        ]
        assert not (await grid.grid.payouts.run_once()).paid
        wallet = await payer.wallet_balance()
        assert (
            wallet.amount == iota_node.balance_of(buyer.address) and wallet.display_unit == "IOTA"
        )
        await payer.ledger.close()


async def test_iota_payment_refusals(database_url: str, iota_node: StandInIotaNode) -> None:
    async with iota_grid(database_url, iota_node) as grid:
        grid_address = grid.grid.payments.address
        seller, (alice, bob), (bill_a, bill_b), _ = await _setup(grid, iota_node, buyers=2)
        assert bill_a.ledger is not None and bill_b.ledger is not None
        async with household_ledger(iota_node) as ledger:

            async def refused(client: GridClient, statement: str, tx: str) -> ProtocolError:
                with pytest.raises(ProtocolError) as err:
                    await client.pay(statement, tx=tx)
                return err.value

            # Paid to the wrong address.
            astray = await ledger.transfer(alice.keys, seller.address, bill_a.ledger.amount_due)
            error = await refused(alice, bill_a.id, astray)
            assert (error.code, error.field) == (ErrorCode.PAYMENT_INVALID, "payload.tx")
            assert "wrong_recipient" in error.message
            # A partial payment, then the rest (more than due: recorded as received).
            half = bill_a.ledger.amount_due // 2
            first = await ledger.transfer(alice.keys, grid_address, half)
            result = await alice.pay(bill_a.id, tx=first)
            assert result.statement.status == "partially_paid"
            assert result.statement.ledger is not None and result.statement.ledger.paid == half
            assert 0 < result.statement.paid_micro < bill_a.amount_due_micro
            rest = await ledger.transfer(alice.keys, grid_address, bill_a.ledger.amount_due)
            result = await alice.pay(bill_a.id, tx=rest)
            assert (result.statement.status, result.statement.paid_micro) == (
                "paid",
                bill_a.amount_due_micro,
            )
            assert result.payment.received == bill_a.ledger.amount_due
            assert result.payment.amount == bill_a.ledger.amount_due - half
            # A digest settles one statement, once: again, or by someone else.
            assert (await refused(alice, bill_a.id, rest)).code is ErrorCode.PAYMENT_REUSED
            error = await refused(bob, bill_b.id, rest)
            assert error.code in (ErrorCode.PAYMENT_REUSED, ErrorCode.PAYMENT_INVALID)
            # Bob cannot claim Alice's fresh payment either: the sender is checked.
            fresh = await ledger.transfer(alice.keys, grid_address, 1_000)
            error = await refused(bob, bill_b.id, fresh)
            assert error.code is ErrorCode.PAYMENT_INVALID and "wrong_sender" in error.message
            # Not final yet: pending, and accepted once checkpointed.
            iota_node.hold_checkpoints()
            slow = household_ledger(iota_node)
            with pytest.raises(TransferInDoubt):
                await slow.transfer(bob.keys, grid_address, bill_b.ledger.amount_due)
            (pending,) = [d for d, tx in iota_node.transactions.items() if tx.checkpoint is None]
            assert (await refused(bob, bill_b.id, pending)).code is ErrorCode.PAYMENT_PENDING
            iota_node.release_checkpoints()
            assert (await bob.pay(bill_b.id, tx=pending)).statement.status == "paid"
            await slow.close()
            # Not a digest at all.
            assert (await refused(bob, bill_b.id, "nonsense")).code is ErrorCode.PAYMENT_INVALID


async def test_household_node_times_out_mid_payment(
    database_url: str, iota_node: StandInIotaNode
) -> None:
    """The node swallows the payment: in doubt, kept, finished after a restart, paid once."""
    async with iota_grid(database_url, iota_node) as grid:
        grid_address = grid.grid.payments.address
        _, (buyer,), (bill,), _ = await _setup(grid, iota_node)
        info = await buyer.grid_info()
        state: dict[str, Any] = {}

        async def save(new: dict[str, Any]) -> None:
            state.clear()
            state.update(new)

        payer = IotaPayer(buyer, household_ledger(iota_node), save=save)
        iota_node.inject("iota_executeTransactionBlock", Fault.HANG_BEFORE_APPLY, times=50)
        household = Household(
            buyer, info, zone="root", assets=[Asset("main", "meter", None)], payer=payer
        )
        await household.refresh(grid.clock.now())
        assert await household.pay_due(grid.clock.now().date()) == []
        assert bill.id in household.failed_payments
        assert bill.id in state["pending"]  # the signed bytes survive the restart
        await payer.ledger.close()
        iota_node._faults.clear()  # the node recovers
        # "Home Assistant restarts": a new payer from the saved state.
        again = IotaPayer(buyer, household_ledger(iota_node), state=state, save=save)
        digest = await again.pay(bill)
        assert digest == payer.pending.get(bill.id, digest)
        assert len(received_by(iota_node, grid_address)) == 1  # exactly one payment
        assert (await only_statement(buyer)).status == "paid"
        assert state == {"pending": {}}
        await again.ledger.close()


async def test_household_answer_lost_after_execution(
    database_url: str, iota_node: StandInIotaNode
) -> None:
    """The node executes the payment but its answer is lost: found by digest, paid once."""
    async with iota_grid(database_url, iota_node) as grid:
        grid_address = grid.grid.payments.address
        _, (buyer,), (bill,), _ = await _setup(grid, iota_node)
        async with household_ledger(iota_node) as ledger:
            payer = IotaPayer(buyer, ledger)
            iota_node.inject("iota_executeTransactionBlock", Fault.HANG_AFTER_APPLY)
            digest = await payer.pay(bill)
            assert await payer.pay(bill) == digest
        assert len(received_by(iota_node, grid_address)) == 1
        assert (await only_statement(buyer)).status == "paid"


async def test_payout_node_timeout_then_recovery(
    database_url: str, iota_node: StandInIotaNode
) -> None:
    async with iota_grid(database_url, iota_node, payout_policy="float") as grid:
        seller, _, _, credit = await _setup(grid, iota_node)
        assert credit.ledger is not None
        iota_node.inject("iota_executeTransactionBlock", Fault.HANG_BEFORE_APPLY, times=50)
        report = await grid.grid.payouts.run_once()
        assert report.in_doubt == 1 and not report.paid
        # While a payout is in doubt nothing new is paid.
        assert (await grid.grid.payouts.run_once()).skipped
        iota_node._faults.clear()
        report = await grid.grid.payouts.run_once()
        assert report.recovered == 1 and len(report.paid) == 1
        assert received_by(iota_node, seller.address) == [-credit.ledger.amount_due]
        assert (await only_statement(seller)).status == "paid"


async def test_crash_between_payout_and_record_iota(
    database_url: str, iota_node: StandInIotaNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sent, then the process dies before recording: the restart finds it on chain."""

    class Crash(Exception):
        pass

    async def crash(self: PayoutWorker, *args: object) -> None:
        raise Crash

    async with iota_grid(database_url, iota_node, payout_policy="float") as grid:
        seller, _, _, credit = await _setup(grid, iota_node)
        monkeypatch.setattr(PayoutWorker, "_complete", crash)
        with pytest.raises(Crash):
            await grid.grid.payouts.run_once()
        clock = grid.clock
    assert credit.ledger is not None
    owed = -credit.ledger.amount_due
    assert received_by(iota_node, seller.address) == [owed]  # it was sent
    monkeypatch.undo()
    async with run_grid_server(
        database_url, clock=clock, grid=iota_config(iota_node, payout_policy="float")
    ) as grid:
        assert grid.grid.payments.address == ledger_key_for(database_url).address
        statement = await only_statement(grid.client(seller.keys))
        assert statement.status == "issued"  # not recorded before the crash
        report = await grid.grid.payouts.run_once()
        assert report.recovered == 1 and len(report.paid) == 1
        assert received_by(iota_node, seller.address) == [owed]  # exactly once
        statement = await only_statement(grid.client(seller.keys))
        assert (statement.status, statement.paid_micro) == ("paid", statement.amount_due_micro)
        assert not (await grid.grid.payouts.run_once()).paid

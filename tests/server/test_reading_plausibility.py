"""Readings the grid believes: implausible ones are kept, settled at their bound, flagged, held.

Against a real server at the demo's location (SQLite and PostgreSQL): a
reading above its approved rating, PV at night, a battery giving out more
than it held and charged. Each is stored as sent, settled at its plausible
bound, flagged (the operator's list, the audit log that ``p2p-grid audit
verify`` accepts, the household's stream); the payout of its statement waits
until the operator decides, and an accepted reading is settled in full later.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from grid_server.config import LedgerConfig
from grid_server.storage.schema import line_items, log_entries, reading_flags, readings
from p2p_energy_client.grid_client import GridClient
from p2p_energy_client.protocol import MeterDecl, Reading, SourceDecl, SourceKind
from p2p_energy_client.units import format_utc
from tests.support.factories import MAIN, PV
from tests.support.grid_server import RunningGrid, run_grid_server
from tests.support.market import issue_statements, only_statement
from tests.support.meters import demo_grid, first_event, operator_api
from tests.support.processes import audit_verify

BIG_PV = SourceDecl("pv", "Field", SourceKind.SOLAR, 50_000)
CHARGER = MeterDecl("charge", "Battery charger", 5_000)
BATTERY = SourceDecl("bat", "Battery", SourceKind.BATTERY, 5_000, "charge", 2_000)


def _config() -> Any:
    return demo_grid(
        id="test-grid",
        settlement_window_seconds=600,
        settlement_period_seconds=3600,
        ledger=LedgerConfig(payout_policy="float", payout_threshold_micro=1_000),
    )


async def _flags(grid: RunningGrid, *, everything: bool = False) -> list[dict[str, Any]]:
    answer = await operator_api(grid, "GET", "/flags?all=true" if everything else "/flags")
    assert answer.status_code == 200, answer.text
    flags: list[dict[str, Any]] = answer.json()["flags"]
    return flags


async def _lines(grid: RunningGrid, t: datetime) -> dict[tuple[int | None, str], int]:
    async with grid.grid.db.read() as conn:
        rows = await conn.execute(select(line_items).where(line_items.c.interval_start == t))
        return {(r.participant_id, r.kind): int(r.energy_wh) for r in rows}


async def _stored_reading(grid: RunningGrid, t: datetime, asset: str) -> int:
    async with grid.grid.db.read() as conn:
        value = await conn.scalar(
            select(readings.c.energy_wh).where(
                readings.c.interval_start == t, readings.c.asset_id == asset
            )
        )
    return int(value)


async def test_over_rating_is_settled_at_the_bound_and_its_payout_waits(database_url: str) -> None:
    async with run_grid_server(database_url, grid=_config()) as grid:
        big = await grid.member("Big")
        honest = await grid.member("Honest")
        await big.set_assets([BIG_PV], [])
        await honest.set_assets([PV], [])
        # An inspection found a 10 kW inverter behind the declared 50 kW.
        answer = await operator_api(
            grid, "POST", f"/assets/{big.address}/pv/decision", {"approve": True, "power_w": 10_000}
        )
        assert answer.status_code == 200, answer.text
        t = grid.grid.schedule.start_of(grid.clock.now()) + timedelta(minutes=15)
        grid.clock.set(t + timedelta(minutes=15, seconds=1))
        await grid.run_cycle()
        # Within the declared 50 kW (ingest takes it), far above the approved 10 kW.
        await big.send_readings([Reading(t, "pv", 12_000)])
        await honest.send_readings([Reading(t, "pv", 900)])
        flagged = asyncio.create_task(first_event(big, "reading_flagged"))
        await asyncio.sleep(0.2)  # the stream is open before the settlement
        await issue_statements(grid, t)

        # Kept as sent, settled at 10 kW x (15 + 5) minutes, flagged.
        assert await _stored_reading(grid, t, "pv") == 12_000
        lines = await _lines(grid, t)
        big_id, honest_id = await _participant_ids(grid, big, honest)
        assert lines[(big_id, "surplus_feed_in")] == 3_334
        assert lines[(honest_id, "surplus_feed_in")] == 900
        (flag,) = await _flags(grid)
        statement = await only_statement(big)
        assert (flag["participant"], flag["asset"], flag["interval"]) == (
            big.address,
            "pv",
            format_utc(t),
        )
        assert (flag["reading_wh"], flag["bound_wh"], flag["code"]) == (
            12_000,
            3_334,
            "over_rating",
        )
        assert flag["statement"] == statement.id and flag["decision"] is None
        assert "it is settled at 3334 Wh" in flag["reason"]
        event = await flagged
        assert (event.data["code"], event.data["bound_wh"]) == ("over_rating", 3_334)
        async with grid.grid.db.read() as conn:
            kinds = (await conn.execute(select(log_entries.c.kind))).scalars().all()
        assert kinds.count("reading_flags") == 1

        # The grid can pay both, but pays only the honest household.
        payments = grid.grid.payments
        await payments.mint(payments.address, 10_000_000)
        report = await grid.grid.payouts.run_once()
        assert [p["recipient"] for p in report.paid] == [honest.address]
        assert (await only_statement(big)).status == "issued"
        assert await audit_verify(database_url) == 0

        # The operator settles it at the bound: the payout goes on.
        decided = await operator_api(
            grid,
            "POST",
            "/flags/decision",
            {
                "participant": big.address,
                "interval": format_utc(t),
                "asset": "pv",
                "decision": "bound",
                "note": "inverter limit",
            },
        )
        assert decided.status_code == 200, decided.text
        assert decided.json()["statement"] == statement.id
        assert await _flags(grid) == []
        # The household learns the decision on its stream, as it learned the flag.
        told = await first_event(big, "flag_decision")
        assert told.data == {
            "asset": "pv",
            "interval": format_utc(t),
            "decision": "bound",
            "note": "inverter limit",
            "statement": statement.id,
        }
        report = await grid.grid.payouts.run_once()
        assert [p["recipient"] for p in report.paid] == [big.address]
        paid = await only_statement(big)
        assert paid.status == "paid" and paid.amount_due_micro == statement.amount_due_micro
        # Decided once.
        again = await operator_api(
            grid,
            "POST",
            "/flags/decision",
            {
                "participant": big.address,
                "interval": format_utc(t),
                "asset": "pv",
                "decision": "reading",
            },
        )
        assert again.status_code == 404
        assert await audit_verify(database_url) == 0


async def test_pv_at_night_is_settled_at_zero_then_accepted_in_full(database_url: str) -> None:
    async with run_grid_server(database_url, grid=_config()) as grid:
        home = await grid.member("Night owl")
        await home.set_assets([PV], [])
        # 20:00 UTC in late November: the sun set over Frankfurt hours ago.
        night = datetime.fromisoformat("2026-11-27T20:00:00+00:00")
        grid.clock.set(night + timedelta(minutes=15, seconds=1))
        await grid.run_cycle()
        await home.send_readings([Reading(night, "pv", 500)])
        await issue_statements(grid, night)
        (flag,) = await _flags(grid)
        assert (flag["bound_wh"], flag["code"]) == (0, "above_clear_sky")
        (pid,) = await _participant_ids(grid, home)
        assert (pid, "surplus_feed_in") not in await _lines(grid, night)

        # The household was offline in the afternoon: the operator accepts the reading.
        decided = await operator_api(
            grid,
            "POST",
            "/flags/decision",
            {
                "participant": home.address,
                "interval": format_utc(night),
                "asset": "pv",
                "decision": "reading",
            },
        )
        assert decided.status_code == 200, decided.text
        later = grid.grid.schedule.start_of(grid.clock.now())
        grid.clock.set(later + timedelta(minutes=26))
        await grid.run_cycle()
        lines = await _lines(grid, later)
        assert lines[(pid, "accepted_reading")] == 500
        assert lines[(None, "utility:accepted_reading")] == 500
        async with grid.grid.db.read() as conn:
            amounts = (
                (
                    await conn.execute(
                        select(line_items.c.amount_micro).where(
                            line_items.c.interval_start == later
                        )
                    )
                )
                .scalars()
                .all()
            )
        assert sum(amounts) == 0 and -40_000 in amounts  # 500 Wh at 0.08 per kWh
        # Booked once, however often the cycle runs.
        grid.clock.advance(minutes=15)
        await grid.run_cycle()
        assert (pid, "accepted_reading") not in await _lines(grid, later + timedelta(minutes=15))
        assert await audit_verify(database_url) == 0


async def test_a_battery_cannot_give_out_more_than_it_held_and_charged(
    database_url: str,
) -> None:
    async with run_grid_server(database_url, grid=_config()) as grid:
        home = await grid.member("Battery")
        await home.set_assets([BATTERY], [CHARGER])
        first = grid.grid.schedule.start_of(grid.clock.now()) + timedelta(minutes=15)
        second = first + timedelta(minutes=15)
        # Full at first (2,000 Wh): 1,250 out leaves 750; then 1,250 more with 200 charged.
        grid.clock.set(first + timedelta(minutes=15, seconds=1))
        await grid.run_cycle()
        await home.send_readings([Reading(first, "bat", 1_250), Reading(first, "charge", 0)])
        grid.clock.set(second + timedelta(minutes=15, seconds=1))
        await grid.run_cycle()
        await home.send_readings([Reading(second, "bat", 1_250), Reading(second, "charge", 200)])
        await issue_statements(grid, second)
        (flag,) = await _flags(grid)
        assert (flag["interval"], flag["reading_wh"], flag["bound_wh"], flag["code"]) == (
            format_utc(second),
            1_250,
            950,
            "battery_over_discharge",
        )
        # The verifier replays the flag from the log, and catches a one-unit change to it.
        assert await audit_verify(database_url) == 0
        async with grid.grid.db.write() as conn:
            await conn.execute(update(reading_flags).values(bound_wh=reading_flags.c.bound_wh + 1))
        assert await audit_verify(database_url) != 0


async def test_with_sharing_a_flagged_reading_is_shared_at_its_bound_and_verified(
    database_url: str,
) -> None:
    """Sharing after delivery works on the readings as the grid believes them, and
    ``audit verify``, settling such an interval again, takes them the same way."""
    config = demo_grid(
        id="test-grid",
        settlement_window_seconds=600,
        settlement_period_seconds=3600,
        sharing={"enabled": True},
    )
    async with run_grid_server(database_url, grid=config) as grid:
        owl = await grid.member("Night owl")
        neighbour = await grid.member("Neighbour", role="consumer")
        await owl.set_assets([PV], [])
        await neighbour.set_assets([], [MAIN])
        night = datetime.fromisoformat("2026-11-27T20:00:00+00:00")
        grid.clock.set(night + timedelta(minutes=15, seconds=1))
        await grid.run_cycle()
        # 500 Wh of PV at night: believed, it would be shared with the neighbour's 300.
        await owl.send_readings([Reading(night, "pv", 500)])
        await neighbour.send_readings([Reading(night, "main", 300)])
        await issue_statements(grid, night)
        (flag,) = await _flags(grid)
        assert (flag["bound_wh"], flag["code"]) == (0, "above_clear_sky")
        owl_id, neighbour_id = await _participant_ids(grid, owl, neighbour)
        lines = await _lines(grid, night)
        assert (neighbour_id, "shortfall_retail") in lines
        assert not {kind for _pid, kind in lines if kind.startswith("shared")}
        assert await audit_verify(database_url) == 0

        # Accepted later: booked with the next settlement, which verify also settles again.
        decided = await operator_api(
            grid,
            "POST",
            "/flags/decision",
            {
                "participant": owl.address,
                "interval": format_utc(night),
                "asset": "pv",
                "decision": "reading",
            },
        )
        assert decided.status_code == 200, decided.text
        later = grid.grid.schedule.start_of(grid.clock.now())
        grid.clock.set(later + timedelta(minutes=26))
        await grid.run_cycle()
        assert (await _lines(grid, later))[(owl_id, "accepted_reading")] == 500
        assert await audit_verify(database_url) == 0


async def _participant_ids(grid: RunningGrid, *clients: GridClient) -> list[int]:
    from grid_server.storage.schema import participants  # noqa: PLC0415

    async with grid.grid.db.read() as conn:
        rows = await conn.execute(select(participants.c.address, participants.c.id))
        ids = {r.address: int(r.id) for r in rows}
    return [ids[c.address] for c in clients]


pytestmark = pytest.mark.usefixtures("socket_enabled")

"""The pure rules behind ``readings`` and ``orders`` envelopes (no database, no server).

``plan_readings`` decides per reading (accepted, duplicate, corrected) or
refuses the whole envelope naming the field; ``check_order_capacity`` keeps a
book within what the declared assets can deliver or take. The HTTP tests
(test_registry, test_hostile_input) drive the same rules through the writer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from grid_server.config import MetersConfig
from grid_server.domain.assets import AssetLimits, AssetRow
from grid_server.domain.orders import check_book_size, check_order_capacity
from grid_server.domain.readings import (
    PlannedReading,
    ReadingStatus,
    RecordedReading,
    plan_readings,
)
from grid_server.domain.schedule import Schedule
from p2p_energy_client.models import OrderView
from p2p_energy_client.protocol import ErrorCode, ProtocolError, Reading, Readings

NOW = datetime(2026, 11, 27, 10, 3, tzinfo=UTC)
T = datetime(2026, 11, 27, 9, 45, tzinfo=UTC)  # the interval before NOW's
EARLIER = T - timedelta(minutes=15)
# The grid config's default approval limits (4 kW of PV is approved without the operator).
LIMITS = AssetLimits(
    Schedule(15, 300, 90_000, 86_400, 86_400),
    household_max_power_w=8_000,
    approval=MetersConfig().approval.limits(),
)
DECLARED = NOW - timedelta(days=1)
# 4 kW of PV (1,000 Wh per interval), a 4 kW meter, a meter without a rating.
PV = AssetRow("pv", "source", "solar", "Roof", 4_000, DECLARED, None)
MAIN = AssetRow("main", "meter", None, "Main", 4_000, DECLARED, None)
PLUG = AssetRow("plug", "meter", None, "Plug", None, DECLARED, None)
ASSETS = (PV, MAIN, PLUG)
RECORDED = {(T, "main"): RecordedReading(300, 0, 7, NOW - timedelta(minutes=1))}


def plan(
    *readings: Reading, correction: bool = False, states: dict[datetime, str] | None = None
) -> list[PlannedReading]:
    return plan_readings(
        Readings(readings, correction),
        assets=ASSETS,
        recorded=RECORDED,
        interval_states=states or {},
        limits=LIMITS,
        now=NOW,
    )


def test_each_reading_gets_its_status() -> None:
    planned = plan(Reading(T, "pv", 1_000), Reading(T, "main", 300))
    assert [(p.reading.asset, p.status) for p in planned] == [
        ("pv", ReadingStatus.ACCEPTED),
        ("main", ReadingStatus.DUPLICATE),
    ]
    corrected = plan(Reading(T, "main", 350), correction=True)
    assert corrected[0].status is ReadingStatus.CORRECTED
    assert corrected[0].previous == RECORDED[(T, "main")]


def test_a_meter_without_rating_is_held_to_the_household_limit() -> None:
    assert plan(Reading(T, "plug", 2_000))[0].status is ReadingStatus.ACCEPTED  # 8 kW: 2,000 Wh


@pytest.mark.parametrize(
    ("readings", "states", "code", "field"),
    [
        ([Reading(T + timedelta(minutes=30), "pv", 1)], {}, ErrorCode.INVALID_FIELD, "interval"),
        ([Reading(T - timedelta(days=2), "pv", 1)], {}, ErrorCode.WINDOW_CLOSED, "interval"),
        ([Reading(EARLIER, "pv", 1)], {EARLIER: "settled"}, ErrorCode.WINDOW_CLOSED, "interval"),
        ([Reading(T, "wind", 1)], {}, ErrorCode.UNKNOWN_ASSET, "asset"),
        ([Reading(T, "pv", 1_001)], {}, ErrorCode.OVER_CAPACITY, "energy_wh"),
        ([Reading(T, "plug", 2_001)], {}, ErrorCode.OVER_CAPACITY, "energy_wh"),
        ([Reading(T, "main", 350)], {}, ErrorCode.READING_CONFLICT, "energy_wh"),
    ],
    ids=[
        "not begun",
        "window closed",
        "settled",
        "undeclared",
        "over pv",
        "over household",
        "conflict",
    ],
)
def test_refusals_name_the_reading_and_field(
    readings: list[Reading], states: dict[datetime, str], code: ErrorCode, field: str
) -> None:
    with pytest.raises(ProtocolError) as refused:
        plan(Reading(T, "plug", 10), *readings, states=states)
    assert refused.value.code is code
    assert refused.value.field == f"payload.readings[1].{field}"


def test_an_asset_counts_only_while_it_was_declared() -> None:
    retired = AssetRow("pv", "source", "solar", "Roof", 4_000, DECLARED, T)  # retired at T
    with pytest.raises(ProtocolError) as refused:
        plan_readings(
            Readings((Reading(T, "pv", 1),)),
            assets=(retired,),
            recorded={},
            interval_states={},
            limits=LIMITS,
            now=NOW,
        )
    assert refused.value.code is ErrorCode.UNKNOWN_ASSET


# --- order books ----------------------------------------------------------------------

LATER = NOW + timedelta(hours=1)


def book(*orders: tuple[str, str, int]) -> dict[str, OrderView]:
    return {oid: OrderView(oid, side, wh, "0.1000", "root") for oid, side, wh in orders}


def test_a_book_within_the_assets_passes() -> None:
    check_order_capacity(
        book(("s", "sell", 1_000), ("b", "buy", 1_000)),
        {"s": 0, "b": 1},
        assets=ASSETS,
        interval=LATER,
        limits=LIMITS,
    )


@pytest.mark.parametrize(
    ("orders", "assets", "code", "field"),
    [
        ([("s", "sell", 10)], (MAIN,), ErrorCode.NO_SOURCES, "payload.place[1].side"),
        ([("s", "sell", 1_001)], ASSETS, ErrorCode.OVER_CAPACITY, "payload.place[1].energy_wh"),
        # Rated meters only: the meters' 1,000 Wh; an unrated one: the household's 2,000 Wh.
        ([("b", "buy", 1_001)], (MAIN,), ErrorCode.OVER_CAPACITY, "payload.place[1].energy_wh"),
        ([("b", "buy", 2_001)], ASSETS, ErrorCode.OVER_CAPACITY, "payload.place[1].energy_wh"),
    ],
    ids=["no sources", "over sources", "over meters", "over household"],
)
def test_capacity_refusals_name_the_first_order_placed(
    orders: list[tuple[str, str, int]],
    assets: tuple[AssetRow, ...],
    code: ErrorCode,
    field: str,
) -> None:
    # An order kept from the stored book, then the envelope's place[1:].
    placed = book(("kept", "buy", 0), *orders)
    with pytest.raises(ProtocolError) as refused:
        check_order_capacity(
            placed,
            {oid: i for i, (oid, _, _) in enumerate(orders, start=1)},
            assets=assets,
            interval=LATER,
            limits=LIMITS,
        )
    assert (refused.value.code, refused.value.field) == (code, field)


def test_a_book_holds_at_most_200_orders() -> None:
    check_book_size(book(*((f"o{i}", "buy", 1) for i in range(200))))
    with pytest.raises(ProtocolError) as refused:
        check_book_size(book(*((f"o{i}", "buy", 1) for i in range(201))))
    assert refused.value.field == "payload.place"

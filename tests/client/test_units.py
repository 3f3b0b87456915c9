"""Prices, money and time units."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2p_energy_client.units import (
    UnitError,
    check_interval_minutes,
    format_price,
    format_utc,
    interval_start,
    nano_to_micro,
    parse_price,
    parse_utc,
)


@pytest.mark.parametrize(
    ("text", "ticks"),
    [("0.25", 250_000), ("0.2500", 250_000), ("1", 1_000_000), ("-0.000001", -1), ("0", 0)],
)
def test_parse_price(text: str, ticks: int) -> None:
    assert parse_price(text) == ticks


@pytest.mark.parametrize(
    "text", ["", "0.1234567", "1e-3", "+0.1", "00.1", ".5", "0.", "NaN", "0,25", " 0.1", 0.25, 1]
)
def test_parse_price_refuses(text: object) -> None:
    with pytest.raises(UnitError):
        parse_price(text)


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_price_round_trip(ticks: int) -> None:
    assert parse_price(format_price(ticks)) == ticks


def test_format_price_keeps_four_decimals() -> None:
    assert format_price(250_000) == "0.2500"
    assert format_price(250_050) == "0.25005"
    assert format_price(-80_000) == "-0.0800"


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_rounding_toward_grid_never_favours_household(nano: int) -> None:
    pay = nano_to_micro(nano, toward_grid=True, payer=True)
    get = nano_to_micro(nano, toward_grid=True, payer=False)
    assert pay * 1000 >= nano >= get * 1000
    assert pay - get in (0, 1)


def test_half_even() -> None:
    assert nano_to_micro(1500, toward_grid=False, payer=False) == 2
    assert nano_to_micro(2500, toward_grid=False, payer=False) == 2
    assert nano_to_micro(2501, toward_grid=False, payer=False) == 3


def test_intervals() -> None:
    moment = datetime(2026, 11, 27, 10, 7, 12, tzinfo=UTC)
    assert interval_start(moment, 15) == datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    assert interval_start(moment, 60) == datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    check_interval_minutes(15)
    with pytest.raises(UnitError):
        check_interval_minutes(7)


def test_utc_round_trip_and_refusals() -> None:
    assert parse_utc("2026-11-27T10:00:00Z") == datetime(2026, 11, 27, 10, tzinfo=UTC)
    assert format_utc(datetime(2026, 11, 27, 10, tzinfo=UTC)) == "2026-11-27T10:00:00Z"
    with pytest.raises(UnitError, match="UTC"):
        parse_utc("2026-11-27T10:00:00+01:00")
    with pytest.raises(UnitError):
        parse_utc("yesterday Z")
    with pytest.raises(UnitError):
        format_utc(datetime(2026, 11, 27))  # naive

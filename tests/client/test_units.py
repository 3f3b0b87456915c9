"""Prices, money and time units."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2p_energy_client.units import (
    MAX_PRICE_TICKS,
    UnitError,
    check_interval_minutes,
    format_price,
    format_utc,
    interval_start,
    micro_ceil,
    micro_floor,
    micro_half_even,
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


@given(st.integers(min_value=-MAX_PRICE_TICKS, max_value=MAX_PRICE_TICKS))
def test_price_round_trip(ticks: int) -> None:
    assert parse_price(format_price(ticks)) == ticks


def test_format_price_keeps_four_decimals() -> None:
    assert format_price(250_000) == "0.2500"
    assert format_price(250_050) == "0.25005"
    assert format_price(-80_000) == "-0.0800"


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_rounding_toward_grid_never_favours_household(nano: int) -> None:
    pay, get = micro_ceil(nano), micro_floor(nano)
    assert pay * 1000 >= nano >= get * 1000
    assert pay - get in (0, 1)


@given(st.lists(st.integers(min_value=-(10**15), max_value=10**15), max_size=20))
def test_rounding_of_arrays_is_the_rounding_of_each(nanos: list[int]) -> None:
    array = np.array(nanos, dtype=np.int64)
    assert micro_ceil(array).tolist() == [micro_ceil(n) for n in nanos]
    assert micro_floor(array).tolist() == [micro_floor(n) for n in nanos]


@pytest.mark.parametrize(
    ("nano", "micro"),
    [(1500, 2), (2500, 2), (2501, 3), (-1500, -2), (-2500, -2), (499, 0), (-501, -1)],
)
def test_figures_shown_round_half_to_even(nano: int, micro: int) -> None:
    assert micro_half_even(nano) == micro


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


@pytest.mark.parametrize("text", ["1000000.000001", "-1000000.000001", "999999999999"])
def test_prices_beyond_the_grids_range_are_refused(text: str) -> None:
    with pytest.raises(UnitError, match="price range"):
        parse_price(text)

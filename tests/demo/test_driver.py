"""Simulated meters through the integration's own Household: every Wh arrives as readings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from grid_server.demo.driver import assets_of, declarations, household_keys
from grid_server.demo.grid import demo_grid
from grid_server.demo.neighbourhood import (
    BATTERY,
    BATTERY_CHARGE,
    HOUSE,
    SOLAR,
    Neighbourhood,
    make_households,
)
from p2p_energy_client.grid_client import GridClient
from p2p_energy_client.household import Household
from p2p_energy_client.models import GridInfo, PriceStep
from p2p_energy_client.protocol import Assets

START = datetime(2026, 6, 15, 6, 0, tzinfo=UTC)


def grid_info() -> GridInfo:
    price = PriceStep(datetime(1970, 1, 1, tzinfo=UTC), "0.3000", "0.0800")
    return GridInfo(
        "demo", "Demo", "EUR", 15, 300, 900, 3600, 6 * 3600, 300, price, (price,), (), "local",
        None, START, 1,
    )  # fmt: skip


def test_declarations_map_devices_to_sources_and_meters() -> None:
    specs = make_households(40, seed=1)
    for spec in specs:
        sources, meters = declarations(spec)
        Assets(sources, meters)  # valid by the protocol's own rules
        ids = {s.id for s in sources} | {m.id for m in meters}
        assert ids == set(spec.assets)
        assert HOUSE in {m.id for m in meters}
        if spec.pv is not None:
            pv = next(s for s in sources if s.id == SOLAR)
            assert pv.rated_power_w == spec.pv.inverter_w
        if spec.battery is not None:
            assert {s.id for s in sources} >= {BATTERY}
            assert {m.id for m in meters} >= {BATTERY_CHARGE}
        if spec.role == "consumer":
            assert not sources  # a consumer may not declare sources
    assert household_keys(1, 3).address == household_keys(1, 3).address
    assert household_keys(1, 3).address != household_keys(2, 3).address


def test_grid_sizes_links_by_feeder() -> None:
    specs = make_households(60, seed=1)
    config = demo_grid(specs)
    feeders = {z.id: z for z in config.zones if z.parent is not None}
    assert set(feeders) == {"north", "centre", "south"}
    for zone_id, zone in feeders.items():
        households = sum(1 for s in specs if s.zone == zone_id)
        assert zone.capacity_up_wh == max(1000, 400 * households)
    assert config.settlement_period_seconds % (config.interval_minutes * 60) == 0


def test_households_report_exactly_the_energy_their_meters_measured() -> None:
    specs = make_households(12, seed=2)
    nb = Neighbourhood(specs, START, seed=2)
    households = [
        Household(
            GridClient("http://127.0.0.1:9", household_keys(2, s.index)),
            grid_info(),
            zone=s.zone,
            assets=assets_of(s),
        )
        for s in specs
    ]
    first = [nb.meters(i) for i in range(len(specs))]
    for i, household in enumerate(households):
        for asset, total in first[i].items():
            household.observe(asset, total, nb.now)
    reported: dict[tuple[int, str], int] = {}
    intervals: set[datetime] = set()
    end = START + timedelta(hours=3)
    while nb.now < end:
        at = nb.advance()
        for i, household in enumerate(households):
            for asset, total in nb.meters(i).items():
                household.observe(asset, total, at)
            for reading in household.collect(at):
                key = (i, reading.asset)
                reported[key] = reported.get(key, 0) + reading.energy_wh
                intervals.add(reading.interval)
    assert intervals == {START + timedelta(minutes=15 * k) for k in range(12)}
    for i, spec in enumerate(specs):
        last = nb.meters(i)
        for asset in spec.assets:
            measured = last[asset] - first[i][asset]
            # Whole Wh only; the fraction is carried, never lost or invented.
            assert 0 <= measured - reported[(i, asset)] < 1

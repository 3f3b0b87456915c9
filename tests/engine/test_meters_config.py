"""The ``[grid.meters]`` configuration: documented defaults, and every refusal named."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from pydantic import ValidationError

from grid_server.config import GridConfig, MetersConfig
from grid_server.domain.clear_sky import ClearSkyEnvelope


def test_defaults_fit_households() -> None:
    meters = GridConfig().meters
    limits = meters.approval.limits()
    assert (limits.solar_w, limits.battery_w, limits.battery_capacity_wh) == (
        30_000,
        12_000,
        30_000,
    )
    assert (limits.wind_w, limits.other_w, limits.meter_w) == (10_000, 10_000, 43_000)
    assert (limits.absolute_power_w, limits.absolute_capacity_wh) == (1_000_000, 4_000_000)
    assert meters.location is None
    assert meters.clock_skew_seconds == 300
    margins = meters.solar.margins()
    assert margins.factor == pytest.approx(1.5 * 1.2 * 1.5 / 1000)
    rule = meters.battery.rule()
    assert (rule.round_trip_efficiency, rule.unlinked_cycles_per_day) == (1.0, 3.0)


def test_rules_follow_the_grid() -> None:
    without = GridConfig().meter_rules()
    assert without.solar is None  # no location: solar held to its rating
    assert without.unrated_power_w == 43_000
    config = GridConfig.model_validate(
        {
            "household_max_power_w": 30_000,
            "meters": {
                "location": {"latitude": 50.1, "longitude": 8.7, "altitude_m": 110},
                "clock_skew_seconds": 120,
                "battery": {"round_trip_efficiency": 0.95},
            },
        }
    )
    rules = config.meter_rules()
    assert isinstance(rules.solar, ClearSkyEnvelope)
    assert rules.solar.site.latitude == 50.1
    assert (rules.clock_skew_seconds, rules.unrated_power_w) == (120, 30_000)
    assert rules.battery.round_trip_efficiency == 0.95


def test_toml_section_reads() -> None:
    text = """
    [meters.approval]
    solar_w = 20000
    [meters.location]
    latitude = -33.9
    longitude = 18.4
    [meters.solar]
    cloud_enhancement = 1.3
    """
    config = GridConfig.model_validate(tomllib.loads(text))
    assert config.meters.approval.solar_w == 20_000
    assert config.meters.location is not None
    assert config.meters.location.altitude_m == 0.0
    assert config.meters.solar.cloud_enhancement == 1.3


@pytest.mark.parametrize(
    ("meters", "where"),
    [
        ({"approval": {"solar_w": -1}}, "approval.solar_w"),
        ({"approval": {"battery_capacity_wh": -1}}, "approval.battery_capacity_wh"),
        ({"approval": {"absolute_power_w": 0}}, "approval.absolute_power_w"),
        ({"approval": {"absolute_power_w": 10**9 + 1}}, "approval.absolute_power_w"),
        ({"approval": {"absolute_capacity_wh": 10**12 + 1}}, "approval.absolute_capacity_wh"),
        ({"approval": {"solar_w": 1_000_001}}, "approval.solar_w"),
        ({"approval": {"meter_w": 50_000, "absolute_power_w": 40_000}}, "approval.meter_w"),
        ({"approval": {"battery_capacity_wh": 4_000_001}}, "approval.battery_capacity_wh"),
        ({"approval": {"wind": 1}}, "approval.wind"),
        ({"location": {"latitude": 91, "longitude": 0}}, "location.latitude"),
        ({"location": {"latitude": 50, "longitude": -181}}, "location.longitude"),
        ({"location": {"latitude": float("nan"), "longitude": 0}}, "location.latitude"),
        ({"location": {"longitude": 8.7}}, "location.latitude"),
        ({"location": {"latitude": 0, "longitude": 0, "altitude_m": 9001}}, "location.altitude_m"),
        ({"clock_skew_seconds": -1}, "clock_skew_seconds"),
        ({"clock_skew_seconds": 3601}, "clock_skew_seconds"),
        ({"solar": {"linke_turbidity": 0.5}}, "solar.linke_turbidity"),
        ({"solar": {"ground_reflectance": 1.1}}, "solar.ground_reflectance"),
        ({"solar": {"cloud_enhancement": 0.9}}, "solar.cloud_enhancement"),
        ({"solar": {"cloud_enhancement": float("inf")}}, "solar.cloud_enhancement"),
        ({"solar": {"cold_cell_gain": 0.99}}, "solar.cold_cell_gain"),
        ({"solar": {"dc_ac_ratio": 0.8}}, "solar.dc_ac_ratio"),
        ({"solar": {"sample_seconds": 0}}, "solar.sample_seconds"),
        ({"solar": {"sample_seconds": 7}}, "solar.sample_seconds"),
        ({"battery": {"round_trip_efficiency": 1.01}}, "battery.round_trip_efficiency"),
        ({"battery": {"round_trip_efficiency": 0}}, "battery.round_trip_efficiency"),
        ({"battery": {"unlinked_cycles_per_day": 0}}, "battery.unlinked_cycles_per_day"),
        ({"battery": {"fallback_hours": -1}}, "battery.fallback_hours"),
        ({"smart": True}, "smart"),
    ],
)
def test_refusals_name_the_field(meters: dict[str, Any], where: str) -> None:
    with pytest.raises(ValidationError) as info:
        GridConfig.model_validate({"meters": meters})
    text = str(info.value)
    # pydantic names the path; a cross-field check names the field in its message.
    located = any(
        ".".join(map(str, e["loc"])).startswith(f"meters.{where}") for e in info.value.errors()
    )
    assert located or f"meters.{where}" in text, text


def test_meters_config_alone_validates_too() -> None:
    assert MetersConfig(clock_skew_seconds=0).clock_skew_seconds == 0

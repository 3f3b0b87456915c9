"""The blueprint in the repository: run an appliance while the current interval's price is low.

It follows the "Local price" sensor (the interval running now, so nothing
starts at the price announced for the next one), and by default never turns
the appliance off mid-cycle; with the option on, it does when the price rises.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import async_mock_service

BLUEPRINT = (
    Path(__file__).parents[2] / "blueprints/automation/p2p_energy/run_appliance_when_cheap.yaml"
)


async def _install(hass: HomeAssistant, **options: object) -> None:
    target = Path(hass.config.path("blueprints/automation/p2p_energy"))

    def install() -> None:
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(BLUEPRINT, target / BLUEPRINT.name)

    await hass.async_add_executor_job(install)
    hass.states.async_set("sensor.local_price", "0.2500", {"unit_of_measurement": "EUR/kWh"})
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": {
                "use_blueprint": {
                    "path": f"p2p_energy/{BLUEPRINT.name}",
                    "input": {
                        "price_sensor": "sensor.local_price",
                        "max_price": 0.15,
                        "appliance": "switch.dishwasher",
                        **options,
                    },
                }
            }
        },
    )
    await hass.async_block_till_done()


@pytest.mark.parametrize(
    ("options", "turned_off"),
    [({}, False), ({"turn_off_when_expensive": True}, True)],
    ids=["default-never-cuts-a-cycle", "turn-off-when-expensive"],
)
async def test_blueprint_switches_with_the_local_price(
    hass: HomeAssistant, options: dict[str, object], turned_off: bool
) -> None:
    on = async_mock_service(hass, "switch", "turn_on")
    off = async_mock_service(hass, "switch", "turn_off")
    await _install(hass, **options)

    hass.states.async_set("sensor.local_price", "0.0800")  # a cheap interval starts
    await hass.async_block_till_done()
    assert [c.data["entity_id"] for c in on] == [["switch.dishwasher"]]
    assert off == []

    hass.states.async_set("sensor.local_price", "0.3000")  # the next one is dear
    await hass.async_block_till_done()
    assert [c.data["entity_id"] for c in off] == ([["switch.dishwasher"]] if turned_off else [])

    hass.states.async_set("sensor.local_price", "unknown")  # not yet cleared: do nothing
    await hass.async_block_till_done()
    assert (len(on), len(off)) == (1, int(turned_off))

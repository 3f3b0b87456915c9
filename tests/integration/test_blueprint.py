"""The blueprint in the repository: run an appliance while the next price is low."""

from __future__ import annotations

import shutil
from pathlib import Path

from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import async_mock_service

BLUEPRINT = (
    Path(__file__).parents[2] / "blueprints/automation/p2p_energy/run_appliance_when_cheap.yaml"
)


async def test_blueprint_switches_with_the_next_price(hass: HomeAssistant) -> None:
    target = Path(hass.config.path("blueprints/automation/p2p_energy"))

    def install() -> None:
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(BLUEPRINT, target / BLUEPRINT.name)

    await hass.async_add_executor_job(install)
    on = async_mock_service(hass, "switch", "turn_on")
    off = async_mock_service(hass, "switch", "turn_off")
    hass.states.async_set("sensor.next_price", "0.2500", {"unit_of_measurement": "EUR/kWh"})
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": {
                "use_blueprint": {
                    "path": f"p2p_energy/{BLUEPRINT.name}",
                    "input": {
                        "price_sensor": "sensor.next_price",
                        "max_price": 0.15,
                        "appliance": "switch.dishwasher",
                    },
                }
            }
        },
    )
    await hass.async_block_till_done()

    hass.states.async_set("sensor.next_price", "0.0800")
    await hass.async_block_till_done()
    assert [c.data["entity_id"] for c in on] == [["switch.dishwasher"]]
    assert off == []

    hass.states.async_set("sensor.next_price", "0.3000")
    await hass.async_block_till_done()
    assert [c.data["entity_id"] for c in off] == [["switch.dishwasher"]]

    hass.states.async_set("sensor.next_price", "unknown")  # not yet cleared: do nothing
    await hass.async_block_till_done()
    assert (len(on), len(off)) == (1, 1)

"""Switch: automatic trading on or off (an option of the membership)."""

from __future__ import annotations

from typing import Any

from homeassistant.components.switch import SwitchEntity
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import CONF_TRADING
from .coordinator import P2PCoordinator
from .data import P2PConfigEntry
from .entity import P2PEntity

PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: P2PConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    async_add_entities([P2PTradingSwitch(entry.runtime_data.coordinator)])


class P2PTradingSwitch(P2PEntity, SwitchEntity):
    _attr_translation_key = "trading"
    _attr_entity_category = EntityCategory.CONFIG

    def __init__(self, coordinator: P2PCoordinator) -> None:
        super().__init__(coordinator, "trading")

    @property
    def available(self) -> bool:
        return True  # a local setting: usable while the grid is unreachable

    @property
    def is_on(self) -> bool:
        return self.coordinator.household.options.enabled

    async def async_turn_on(self, **kwargs: Any) -> None:
        await self._set(True)

    async def async_turn_off(self, **kwargs: Any) -> None:
        await self._set(False)

    async def _set(self, enabled: bool) -> None:
        entry = self.coordinator.config_entry
        self.hass.config_entries.async_update_entry(
            entry, options={**entry.options, CONF_TRADING: enabled}
        )
        self.async_write_ha_state()

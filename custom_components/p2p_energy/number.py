"""Numbers: the owner's price limits and daily spending cap (options of the membership)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from homeassistant.components.number import (
    NumberDeviceClass,
    NumberEntity,
    NumberEntityDescription,
    NumberMode,
)
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .client.household import TradingOptions
from .const import CONF_DAILY_CAP, CONF_MAX_BUY_PRICE, CONF_MIN_SELL_PRICE
from .coordinator import P2PCoordinator
from .data import P2PConfigEntry
from .entity import P2PEntity
from .prices import MAX_DAILY_CAP, PRICE_BOUND, PRICE_STEP

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class P2PNumberDescription(NumberEntityDescription):
    option: str
    value_fn: Callable[[TradingOptions], float]
    per_kwh: bool


NUMBERS: tuple[P2PNumberDescription, ...] = (
    P2PNumberDescription(
        key="min_sell_price",
        translation_key="min_sell_price",
        option=CONF_MIN_SELL_PRICE,
        native_min_value=-PRICE_BOUND,
        native_max_value=PRICE_BOUND,
        native_step=PRICE_STEP,
        per_kwh=True,
        value_fn=lambda o: float(Decimal(o.min_sell_price)),
    ),
    P2PNumberDescription(
        key="max_buy_price",
        translation_key="max_buy_price",
        option=CONF_MAX_BUY_PRICE,
        native_min_value=-PRICE_BOUND,
        native_max_value=PRICE_BOUND,
        native_step=PRICE_STEP,
        per_kwh=True,
        value_fn=lambda o: float(Decimal(o.max_buy_price)),
    ),
    P2PNumberDescription(
        key="daily_cap",
        translation_key="daily_cap",
        option=CONF_DAILY_CAP,
        device_class=NumberDeviceClass.MONETARY,
        native_min_value=0.0,
        native_max_value=MAX_DAILY_CAP,
        native_step=0.01,
        per_kwh=False,
        value_fn=lambda o: o.daily_cap_micro / 1_000_000,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: P2PConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    coordinator = entry.runtime_data.coordinator
    async_add_entities(P2PNumber(coordinator, description) for description in NUMBERS)


class P2PNumber(P2PEntity, NumberEntity):
    entity_description: P2PNumberDescription
    _attr_entity_category = EntityCategory.CONFIG
    _attr_mode = NumberMode.BOX

    def __init__(self, coordinator: P2PCoordinator, description: P2PNumberDescription) -> None:
        super().__init__(coordinator, description.key)
        self.entity_description = description
        currency = coordinator.household.grid.currency
        self._attr_native_unit_of_measurement = (
            f"{currency}/kWh" if description.per_kwh else currency
        )

    @property
    def available(self) -> bool:
        return True  # a local setting: usable while the grid is unreachable

    @property
    def native_value(self) -> float:
        return self.entity_description.value_fn(self.coordinator.household.options)

    async def async_set_native_value(self, value: float) -> None:
        entry = self.coordinator.config_entry
        self.hass.config_entries.async_update_entry(
            entry, options={**entry.options, self.entity_description.option: value}
        )
        self.async_write_ha_state()

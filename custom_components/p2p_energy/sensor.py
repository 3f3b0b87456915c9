"""Sensors: local prices, traded energy, money, and what is waiting to be sent."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.config_entries import ConfigSubentry
from homeassistant.const import EntityCategory, UnitOfEnergy
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .client.household import Snapshot
from .coordinator import P2PCoordinator
from .data import P2PConfigEntry
from .entity import P2PAssetEntity, P2PEntity

PARALLEL_UPDATES = 0

_NANO = Decimal("1e-9")
_MICRO = Decimal("1e-6")


def _price(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


@dataclass(frozen=True, kw_only=True)
class P2PSensorDescription(SensorEntityDescription):
    """A membership sensor: ``value_fn`` reads the household's snapshot."""

    value_fn: Callable[[Snapshot], Decimal | int | None]
    unit_fn: Callable[[str], str] | None = None  # from the grid's currency


SENSORS: tuple[P2PSensorDescription, ...] = (
    P2PSensorDescription(
        key="price_now",
        translation_key="price_now",
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=4,
        unit_fn=lambda currency: f"{currency}/kWh",
        value_fn=lambda s: _price(s.price_now),
    ),
    P2PSensorDescription(
        key="price_next",
        translation_key="price_next",
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=4,
        unit_fn=lambda currency: f"{currency}/kWh",
        value_fn=lambda s: _price(s.price_next),
    ),
    P2PSensorDescription(
        key="energy_sold",
        translation_key="energy_sold",
        device_class=SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        suggested_display_precision=3,
        value_fn=lambda s: Decimal(s.totals.sold_wh) / 1000,
    ),
    P2PSensorDescription(
        key="energy_bought",
        translation_key="energy_bought",
        device_class=SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        suggested_display_precision=3,
        value_fn=lambda s: Decimal(s.totals.bought_wh) / 1000,
    ),
    P2PSensorDescription(
        key="revenue",
        translation_key="revenue",
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        suggested_display_precision=2,
        unit_fn=lambda currency: currency,
        value_fn=lambda s: s.totals.revenue_nano * _NANO,
    ),
    P2PSensorDescription(
        key="cost",
        translation_key="cost",
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        suggested_display_precision=2,
        unit_fn=lambda currency: currency,
        value_fn=lambda s: s.totals.cost_nano * _NANO,
    ),
    P2PSensorDescription(
        key="savings",
        translation_key="savings",
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        suggested_display_precision=2,
        unit_fn=lambda currency: currency,
        value_fn=lambda s: s.totals.savings_nano * _NANO,
    ),
    P2PSensorDescription(
        key="amount_due",
        translation_key="amount_due",
        device_class=SensorDeviceClass.MONETARY,
        suggested_display_precision=2,
        unit_fn=lambda currency: currency,
        value_fn=lambda s: s.amount_due_micro * _MICRO,
    ),
    P2PSensorDescription(
        key="wallet_balance",
        translation_key="wallet_balance",
        suggested_display_precision=2,
        value_fn=lambda s: s.wallet.value if s.wallet else None,
    ),
    P2PSensorDescription(
        key="readings_pending",
        translation_key="readings_pending",
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda s: s.readings_pending,
    ),
)


# Known without the grid: shown while it is unreachable, when the others are not.
_LOCAL_KEYS = frozenset({"readings_pending"})


async def async_setup_entry(
    hass: HomeAssistant,
    entry: P2PConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    coordinator = entry.runtime_data.coordinator
    async_add_entities(P2PSensor(coordinator, description) for description in SENSORS)
    for subentry in entry.subentries.values():
        async_add_entities(
            [P2PLastReadingSensor(coordinator, subentry)],
            config_subentry_id=subentry.subentry_id,
        )


class P2PSensor(P2PEntity, SensorEntity):
    entity_description: P2PSensorDescription

    def __init__(self, coordinator: P2PCoordinator, description: P2PSensorDescription) -> None:
        super().__init__(coordinator, description.key)
        self.entity_description = description
        grid = coordinator.household.grid
        if description.unit_fn is not None:
            self._attr_native_unit_of_measurement = description.unit_fn(grid.currency)
        if description.key == "wallet_balance":
            # The local ledger counts in the grid's currency; IOTA in IOTA,
            # which is not an ISO 4217 currency, so not a monetary sensor.
            local = grid.ledger_kind == "local"
            self._attr_native_unit_of_measurement = grid.currency if local else "IOTA"
            self._attr_device_class = SensorDeviceClass.MONETARY if local else None

    @property
    def available(self) -> bool:
        return self.entity_description.key in _LOCAL_KEYS or super().available

    @property
    def native_value(self) -> Decimal | int | None:
        return self.entity_description.value_fn(self.coordinator.data)


class P2PLastReadingSensor(P2PAssetEntity, SensorEntity):
    """The energy this asset reported for its last finished interval."""

    _attr_translation_key = "last_reading"
    _attr_device_class = SensorDeviceClass.ENERGY
    _attr_native_unit_of_measurement = UnitOfEnergy.WATT_HOUR

    def __init__(self, coordinator: P2PCoordinator, subentry: ConfigSubentry) -> None:
        super().__init__(coordinator, subentry, "last_reading")

    @property
    def available(self) -> bool:
        return True  # what this Home Assistant sent: known while the grid is away

    @property
    def native_value(self) -> int | None:
        return self.coordinator.data.last_readings.get(self.asset_id)

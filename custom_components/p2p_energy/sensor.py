"""Sensors: local prices, traded energy, money, and what is waiting to be sent.

Two kinds of money figures, on purpose:

* the market's (``energy_bought``/``energy_sold``, ``cost``/``revenue``,
  ``savings``): trades with neighbours at gate closure. They are not what a
  grid meter measures, so the energy ones carry no energy device class and the
  Energy dashboard does not offer them as a grid meter;
* the grid connection's (``grid_import_cost``/``grid_export_compensation``
  and the effective prices): every settled interval, retail and feed-in
  included, for the energy the meters measured. These are what the Energy
  dashboard's "entity tracking the total costs" of the physical grid meter
  means.

States are exact decimals without exponent or trailing zeros
(:func:`~.prices.plain_decimal`).
"""

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
from .prices import plain_decimal

PARALLEL_UPDATES = 0


def _price(text: str | None) -> Decimal | None:
    return None if text is None else plain_decimal(Decimal(text))


def _nano(value: int) -> Decimal:
    return plain_decimal(Decimal(value).scaleb(-9))


def _micro(value: int) -> Decimal:
    return plain_decimal(Decimal(value).scaleb(-6))


def _kwh(wh: int) -> Decimal:
    return plain_decimal(Decimal(wh).scaleb(-3), 3)


def _per_kwh(micro: int, wh: int) -> Decimal | None:
    """Money per kWh: micro-units over Wh (None before any energy)."""
    return None if wh == 0 else plain_decimal(Decimal(micro) / Decimal(wh) / 1000)


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
    # Market trades, not metered energy: no energy device class, so the
    # Energy dashboard does not take them for the grid meter.
    P2PSensorDescription(
        key="energy_sold",
        translation_key="energy_sold",
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        suggested_display_precision=3,
        value_fn=lambda s: _kwh(s.totals.sold_wh),
    ),
    P2PSensorDescription(
        key="energy_bought",
        translation_key="energy_bought",
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        suggested_display_precision=3,
        value_fn=lambda s: _kwh(s.totals.bought_wh),
    ),
    P2PSensorDescription(
        key="revenue",
        translation_key="revenue",
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        suggested_display_precision=2,
        unit_fn=lambda currency: currency,
        value_fn=lambda s: _nano(s.totals.revenue_nano),
    ),
    P2PSensorDescription(
        key="cost",
        translation_key="cost",
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        suggested_display_precision=2,
        unit_fn=lambda currency: currency,
        value_fn=lambda s: _nano(s.totals.cost_nano),
    ),
    P2PSensorDescription(
        key="savings",
        translation_key="savings",
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        suggested_display_precision=2,
        unit_fn=lambda currency: currency,
        value_fn=lambda s: _nano(s.totals.savings_nano),
    ),
    # Sharing after delivery (the grid's option): energy neighbours covered or
    # took after the market, and what that saved against the utility's prices.
    P2PSensorDescription(
        key="energy_shared",
        translation_key="energy_shared",
        # Like energy sold/bought: settled energy, not a meter (no energy device class).
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        suggested_display_precision=3,
        value_fn=lambda s: _kwh(s.totals.shared_wh),
    ),
    P2PSensorDescription(
        key="sharing_value",
        translation_key="sharing_value",
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        suggested_display_precision=2,
        unit_fn=lambda currency: currency,
        value_fn=lambda s: _nano(s.totals.shared_value_nano),
    ),
    P2PSensorDescription(
        key="amount_due",
        translation_key="amount_due",
        device_class=SensorDeviceClass.MONETARY,
        suggested_display_precision=2,
        unit_fn=lambda currency: currency,
        value_fn=lambda s: _micro(s.amount_due_micro),
    ),
    P2PSensorDescription(
        key="wallet_balance",
        translation_key="wallet_balance",
        suggested_display_precision=2,
        value_fn=lambda s: plain_decimal(s.wallet.value, 9) if s.wallet else None,
    ),
    # The grid connection as settled: what the Energy dashboard's cost and
    # compensation entities of the physical grid meter mean.
    P2PSensorDescription(
        key="grid_import_cost",
        translation_key="grid_import_cost",
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        suggested_display_precision=2,
        unit_fn=lambda currency: currency,
        value_fn=lambda s: _micro(s.grid_costs.import_micro),
    ),
    P2PSensorDescription(
        key="grid_export_compensation",
        translation_key="grid_export_compensation",
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        suggested_display_precision=2,
        unit_fn=lambda currency: currency,
        value_fn=lambda s: _micro(s.grid_costs.export_micro),
    ),
    P2PSensorDescription(
        key="effective_import_price",
        translation_key="effective_import_price",
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=4,
        unit_fn=lambda currency: f"{currency}/kWh",
        value_fn=lambda s: _per_kwh(s.grid_costs.import_micro, s.grid_costs.import_wh),
    ),
    P2PSensorDescription(
        key="effective_export_price",
        translation_key="effective_export_price",
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=4,
        unit_fn=lambda currency: f"{currency}/kWh",
        value_fn=lambda s: _per_kwh(s.grid_costs.export_micro, s.grid_costs.export_wh),
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
    async_add_entities([P2PWalletAddressSensor(coordinator)])
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


class P2PWalletAddressSensor(P2PEntity, SensorEntity):
    """The household's address on the grid's ledger: where to send money to fund it."""

    _attr_translation_key = "wallet_address"
    _attr_entity_category = EntityCategory.DIAGNOSTIC

    def __init__(self, coordinator: P2PCoordinator) -> None:
        super().__init__(coordinator, "wallet_address")
        self._attr_native_value = coordinator.client.address

    @property
    def available(self) -> bool:
        return True  # the household's own key: known while the grid is unreachable


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

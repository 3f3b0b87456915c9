"""Event entity: trades, statements, payments, sharing after delivery and the grid's answers
about the household's meters (approvals, flagged readings, the operator's decisions)."""

from __future__ import annotations

from homeassistant.components.event import EventEntity
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .client.household import HouseholdEvent
from .coordinator import P2PCoordinator, signal_event
from .data import P2PConfigEntry
from .entity import P2PEntity

PARALLEL_UPDATES = 0

# The details Household._emit gives trades, statements, payments, shared energy and the
# meters' events; none is recorded (tests check a trade's, a shared and an approval event's).
EVENT_DETAILS = frozenset(
    {
        "amount_due_micro",
        "amount_micro",
        "approved_power_w",
        "asset",
        "bound_wh",
        "code",
        "currency",
        "decision",
        "energy_wh",
        "given_wh",
        "interval",
        "note",
        "order_id",
        "paid_micro",
        "period_end",
        "period_start",
        "price",
        "reading_wh",
        "received_wh",
        "reason",
        "side",
        "statement_id",
        "status",
        "tx_id",
        "value_nano",
        "zone",
    }
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: P2PConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    async_add_entities([P2PMarketEvent(entry.runtime_data.coordinator)])


class P2PMarketEvent(P2PEntity, EventEntity):
    _attr_translation_key = "market"
    _attr_event_types = [  # noqa: RUF012 - HA's attribute
        "trade",
        "statement",
        "payment",
        "shared",
        "asset_approval",
        "reading_flagged",
        "flag_decision",
    ]
    # Each event's details differ from the last, so the recorder would keep a
    # new attribute row for every one; automations read them from the event
    # (or the bus events), the history keeps only the event type.
    _unrecorded_attributes = frozenset(EVENT_DETAILS)

    def __init__(self, coordinator: P2PCoordinator) -> None:
        super().__init__(coordinator, "market")

    async def async_added_to_hass(self) -> None:
        await super().async_added_to_hass()
        self.async_on_remove(
            async_dispatcher_connect(
                self.hass,
                signal_event(self.coordinator.config_entry.entry_id),
                self._on_event,
            )
        )

    @callback
    def _on_event(self, event: HouseholdEvent) -> None:
        self._trigger_event(event.kind, event.data)
        self.async_write_ha_state()

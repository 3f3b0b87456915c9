"""Diagnostics: the membership's state with its secrets redacted."""

from __future__ import annotations

from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util

from .const import CONF_INVITATION, CONF_SECRET_KEY
from .data import P2PConfigEntry

TO_REDACT = {CONF_SECRET_KEY, CONF_INVITATION}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: P2PConfigEntry
) -> dict[str, Any]:
    data = entry.runtime_data
    household = data.household
    snapshot = household.snapshot(dt_util.utcnow())
    state = household.to_state()
    return {
        "entry": {
            "data": async_redact_data(dict(entry.data), TO_REDACT),
            "options": dict(entry.options),
            "subentries": [
                {"type": s.subentry_type, "title": s.title, "data": dict(s.data)}
                for s in entry.subentries.values()
            ],
        },
        "grid": data.grid.to_wire(),
        "zone": household.zone,
        "connected": snapshot.connected,
        "last_contact": snapshot.last_contact.isoformat() if snapshot.last_contact else None,
        "last_seq": data.client.last_seq,
        "last_event_id": household.last_event_id,
        "readings_pending": snapshot.readings_pending,
        "readings_rejected": state["outbox"]["rejected"],
        "unpaid_statements": [s.id for s in snapshot.unpaid],
        "failed_payments": dict(snapshot.failed_payments),
        "meters": state["trackers"],
        # Assets the grid holds (waiting for approval, refused) and flagged readings.
        "meter_trust": state["meter_trust"],
        "receipts": {
            "last_verified": state["receipts"]["last_verified"],
            "verified": state["receipts"]["verified_count"],
            "waiting": len(state["receipts"]["pending"]),
            "failures": state["receipts"]["failures"],
        },
    }

"""Repair flows: pay a statement that is above the daily cap, after asking."""

from __future__ import annotations

from homeassistant import data_entry_flow
from homeassistant.components.repairs import ConfirmRepairFlow, RepairsFlow
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util

from .client.grid_client import GridUnavailable
from .client.protocol import ProtocolError
from .const import REFUSAL_ISSUE_KIND
from .data import P2PConfigEntry


class PayOverCapFlow(ConfirmRepairFlow):
    """Confirm and pay one statement above the cap."""

    def __init__(self, entry_id: str, statement_id: str) -> None:
        super().__init__()
        self.entry_id = entry_id
        self.statement_id = statement_id

    async def async_step_confirm(
        self, user_input: dict[str, str] | None = None
    ) -> data_entry_flow.FlowResult:
        if user_input is None:
            return await super().async_step_confirm(user_input)
        entry: P2PConfigEntry | None = self.hass.config_entries.async_get_entry(self.entry_id)
        if entry is None:
            return self.async_abort(reason="entry_removed")
        if entry.state is not ConfigEntryState.LOADED:
            # Disabled, reloading or retrying set-up: nothing can pay now.
            return self.async_abort(reason="entry_not_loaded")
        data = entry.runtime_data
        try:
            statement = data.household.unpaid.get(self.statement_id) or await data.client.statement(
                self.statement_id
            )
        except GridUnavailable:
            return self.async_abort(reason="cannot_connect")
        except ProtocolError as exc:
            return self.async_abort(
                reason="payment_failed", description_placeholders={"message": exc.message}
            )
        if not await data.household.pay(statement, dt_util.now().date()):
            message = data.household.failed_payments.get(self.statement_id, "")
            return self.async_abort(
                reason="payment_failed", description_placeholders={"message": message}
            )
        await data.coordinator.async_save()
        data.coordinator.async_publish()
        return self.async_create_entry(data={})


class AcknowledgeRefusalFlow(ConfirmRepairFlow):
    """The owner has read why the grid refused an asset's readings; the issue goes.

    The refused readings stay in the diagnostics; a later refusal raises the
    issue again.
    """

    def __init__(self, entry_id: str, asset_id: str) -> None:
        super().__init__()
        self.entry_id = entry_id
        self.asset_id = asset_id

    async def async_step_confirm(
        self, user_input: dict[str, str] | None = None
    ) -> data_entry_flow.FlowResult:
        if user_input is None:
            return await super().async_step_confirm(user_input)
        entry: P2PConfigEntry | None = self.hass.config_entries.async_get_entry(self.entry_id)
        if entry is not None and entry.state is ConfigEntryState.LOADED:
            data = entry.runtime_data
            data.household.acknowledge_refusals(self.asset_id)
            await data.coordinator.async_save()
            data.coordinator.update_refusal_issues()
        return self.async_create_entry(data={})


async def async_create_fix_flow(
    hass: HomeAssistant, issue_id: str, data: dict[str, str | int | float | None] | None
) -> RepairsFlow:
    assert data is not None
    if data.get("kind") == REFUSAL_ISSUE_KIND:
        return AcknowledgeRefusalFlow(str(data["entry_id"]), str(data["asset_id"]))
    return PayOverCapFlow(str(data["entry_id"]), str(data["statement_id"]))

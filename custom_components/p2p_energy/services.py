"""Actions for automations: trade, look at the market, read and pay statements."""

from __future__ import annotations

import secrets
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import voluptuous as vol
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import (
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import config_validation as cv
from homeassistant.util import dt as dt_util

from .client.grid_client import GridUnavailable
from .client.models import Statement
from .client.protocol import OrderSpec, ProtocolError, Side, check_id
from .client.units import (
    UnitError,
    format_money_micro,
    format_utc,
    is_interval_start,
    parse_price,
)
from .const import CONF_GRID_URL, DOMAIN
from .data import P2PConfigEntry

ATTR_ENTRY = "config_entry_id"
SERVICE_PLACE_ORDER = "place_order"
SERVICE_CANCEL_ORDER = "cancel_order"
SERVICE_GET_MARKET = "get_market"
SERVICE_GET_STATEMENT = "get_statement"
SERVICE_PAY_STATEMENT = "pay_statement"

PLACE_ORDER_SCHEMA = vol.Schema(
    {
        vol.Required(ATTR_ENTRY): cv.string,
        vol.Required("side"): vol.In(["buy", "sell"]),
        vol.Required("energy"): vol.Coerce(float),
        vol.Required("price"): vol.Any(cv.string, vol.Coerce(float)),
        vol.Optional("interval"): cv.datetime,
        vol.Optional("order_id"): cv.string,
    }
)
CANCEL_ORDER_SCHEMA = vol.Schema(
    {
        vol.Required(ATTR_ENTRY): cv.string,
        vol.Required("order_id"): cv.string,
        vol.Optional("interval"): cv.datetime,
    }
)
GET_MARKET_SCHEMA = vol.Schema(
    {vol.Required(ATTR_ENTRY): cv.string, vol.Optional("interval"): cv.datetime}
)
GET_STATEMENT_SCHEMA = vol.Schema(
    {vol.Required(ATTR_ENTRY): cv.string, vol.Optional("statement_id"): cv.string}
)
PAY_STATEMENT_SCHEMA = vol.Schema(
    {
        vol.Required(ATTR_ENTRY): cv.string,
        vol.Required("statement_id"): cv.string,
        vol.Optional("allow_over_cap", default=False): cv.boolean,
    }
)


def _entry(hass: HomeAssistant, call: ServiceCall) -> P2PConfigEntry:
    entry_id = call.data[ATTR_ENTRY]
    entry: P2PConfigEntry | None = hass.config_entries.async_get_entry(entry_id)
    if entry is None or entry.domain != DOMAIN or entry.state is not ConfigEntryState.LOADED:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="entry_not_found",
            translation_placeholders={"entry_id": entry_id},
        )
    return entry


def _interval(entry: P2PConfigEntry, call: ServiceCall, *, default_next: bool) -> datetime:
    household = entry.runtime_data.household
    now = dt_util.utcnow()
    value: datetime | None = call.data.get("interval")
    if value is None:
        return (
            household.next_open_interval(now) if default_next else household.current_interval(now)
        )
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt_util.get_default_time_zone())
    value = dt_util.as_utc(value)
    minutes = household.grid.interval_minutes
    if not is_interval_start(value, minutes):
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="invalid_interval",
            translation_placeholders={"interval": value.isoformat(), "minutes": str(minutes)},
        )
    return value


def _grid_error(entry: P2PConfigEntry, exc: Exception) -> HomeAssistantError:
    if isinstance(exc, ProtocolError):
        return ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="grid_rejected",
            translation_placeholders={"message": exc.message},
        )
    return HomeAssistantError(
        translation_domain=DOMAIN,
        translation_key="cannot_connect",
        translation_placeholders={"grid_url": entry.data[CONF_GRID_URL]},
    )


def _price(value: Any) -> str:
    try:
        text = format(Decimal(str(value)).normalize(), "f")
        parse_price(text)
    except (InvalidOperation, UnitError) as exc:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="invalid_price",
            translation_placeholders={"price": str(value)},
        ) from exc
    return text


async def _place_order(call: ServiceCall) -> ServiceResponse:
    entry = _entry(call.hass, call)
    interval = _interval(entry, call, default_next=True)
    energy_wh = round(call.data["energy"] * 1000)
    if energy_wh < 1:
        raise ServiceValidationError(translation_domain=DOMAIN, translation_key="invalid_energy")
    order_id = call.data.get("order_id") or f"manual-{secrets.token_hex(4)}"
    try:
        check_id(order_id, "order_id")
    except ProtocolError as exc:
        raise _grid_error(entry, exc) from exc
    order = OrderSpec(order_id, Side(call.data["side"]), energy_wh, _price(call.data["price"]))
    try:
        book = await entry.runtime_data.client.submit_orders(interval, place=[order])
    except (ProtocolError, GridUnavailable) as exc:
        raise _grid_error(entry, exc) from exc
    return {
        "order_id": order_id,
        "interval": format_utc(interval),
        "gate_closure": format_utc(book.gate_closure),
        "orders": [o.to_wire() for o in book.orders],
    }


async def _cancel_order(call: ServiceCall) -> ServiceResponse:
    entry = _entry(call.hass, call)
    interval = _interval(entry, call, default_next=True)
    try:
        book = await entry.runtime_data.client.submit_orders(
            interval, cancel=[call.data["order_id"]]
        )
    except (ProtocolError, GridUnavailable) as exc:
        raise _grid_error(entry, exc) from exc
    return {"interval": format_utc(interval), "orders": [o.to_wire() for o in book.orders]}


async def _get_market(call: ServiceCall) -> ServiceResponse:
    entry = _entry(call.hass, call)
    interval = _interval(entry, call, default_next=False)
    household = entry.runtime_data.household
    try:
        result = await entry.runtime_data.client.market(interval)
    except (ProtocolError, GridUnavailable) as exc:
        raise _grid_error(entry, exc) from exc
    own_zone = next((z for z in result.zones if z.zone == household.zone), None)
    return {
        "interval": format_utc(result.interval),
        "state": result.state,
        "zone": household.zone,
        "price": own_zone.price if own_zone else None,
        "zones": [z.to_wire() for z in result.zones],
        "fills": [f.to_wire() for f in result.fills],
    }


def _money(micro: int, currency: str) -> str:
    return f"{format_money_micro(micro)} {currency}"


def _statement_response(statement: Statement) -> dict[str, Any]:
    return statement.to_wire()


async def _get_statement(call: ServiceCall) -> ServiceResponse:
    entry = _entry(call.hass, call)
    client = entry.runtime_data.client
    statement_id = call.data.get("statement_id")
    try:
        if statement_id is None:
            listing = await client.statements()
            if not listing:
                return {"statement": None}
            statement_id = max(listing, key=lambda s: s.period_start).id
        statement = await client.statement(statement_id)
    except (ProtocolError, GridUnavailable) as exc:
        raise _grid_error(entry, exc) from exc
    return {"statement": _statement_response(statement)}


async def _pay_statement(call: ServiceCall) -> ServiceResponse:
    entry = _entry(call.hass, call)
    data = entry.runtime_data
    household = data.household
    statement_id = call.data["statement_id"]
    try:
        statement = await data.client.statement(statement_id)
    except (ProtocolError, GridUnavailable) as exc:
        raise _grid_error(entry, exc) from exc
    if statement.amount_due_micro < 0:
        # The grid pays this one (a producer's statement): nothing to send.
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="statement_owed_to_you",
            translation_placeholders={
                "statement_id": statement_id,
                "amount": _money(-statement.amount_due_micro, statement.currency),
            },
        )
    already_paid_here = household.paid_tx(statement_id) is not None
    if statement.amount_due_micro - statement.paid_micro <= 0 and not already_paid_here:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="statement_settled",
            translation_placeholders={"statement_id": statement_id},
        )
    if household.payer is None:
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="payment_failed",
            translation_placeholders={"message": "this grid's ledger cannot be paid from here"},
        )
    today = dt_util.now().date()
    due = statement.amount_due_micro - statement.paid_micro
    cap = household.options.daily_cap_micro
    if not call.data["allow_over_cap"] and household.spent_on(today) + due > cap:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="over_cap",
            translation_placeholders={
                "amount": _money(due, statement.currency),
                "cap": _money(cap, statement.currency),
            },
        )
    if not await household.pay(statement, today):
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="payment_failed",
            translation_placeholders={
                "message": household.failed_payments.get(statement_id, "unknown")
            },
        )
    await data.coordinator.async_save()
    data.coordinator.async_publish()
    return {"statement_id": statement_id, "tx_id": household.paid_tx(statement_id)}


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the integration's actions."""
    for name, handler, schema, response in (
        (SERVICE_PLACE_ORDER, _place_order, PLACE_ORDER_SCHEMA, SupportsResponse.OPTIONAL),
        (SERVICE_CANCEL_ORDER, _cancel_order, CANCEL_ORDER_SCHEMA, SupportsResponse.OPTIONAL),
        (SERVICE_GET_MARKET, _get_market, GET_MARKET_SCHEMA, SupportsResponse.ONLY),
        (SERVICE_GET_STATEMENT, _get_statement, GET_STATEMENT_SCHEMA, SupportsResponse.ONLY),
        (SERVICE_PAY_STATEMENT, _pay_statement, PAY_STATEMENT_SCHEMA, SupportsResponse.OPTIONAL),
    ):
        hass.services.async_register(
            DOMAIN, name, handler, schema=schema, supports_response=response
        )

"""Constants of the p2p_energy integration."""

from __future__ import annotations

import logging
from typing import Final

DOMAIN: Final = "p2p_energy"
LOGGER = logging.getLogger(__package__)

# Config entry data
CONF_GRID_URL: Final = "grid_url"
CONF_INVITATION: Final = "invitation"
CONF_NAME: Final = "name"
CONF_SECRET_KEY: Final = "secret_key"  # noqa: S105 - the config key, not a secret
CONF_ADDRESS: Final = "address"
CONF_GRID_ID: Final = "grid_id"
CONF_KEY_SOURCE: Final = "key_source"
KEY_GENERATE: Final = "generate"
KEY_IMPORT: Final = "import"

# Subentries
SUBENTRY_SOURCE: Final = "source"
SUBENTRY_METER: Final = "meter"
CONF_KIND: Final = "kind"
CONF_ENERGY_ENTITY: Final = "energy_entity"
CONF_ASSET_ID: Final = "asset_id"
CONF_RATED_POWER: Final = "rated_power_w"

# Options
CONF_TRADING: Final = "trading_enabled"
CONF_STRATEGY: Final = "strategy"
CONF_MIN_SELL_PRICE: Final = "min_sell_price"
CONF_MAX_BUY_PRICE: Final = "max_buy_price"
CONF_DAILY_CAP: Final = "daily_cap"
CONF_FORECAST_ENTITY: Final = "forecast_entity"
CONF_TRADE_AHEAD: Final = "trade_ahead_intervals"
CONF_AUTO_PAY: Final = "auto_pay"

DEFAULT_TRADE_AHEAD: Final = 4
# The default daily spending cap: this many kWh at the grid's retail price,
# so it means the same on a EUR, JPY or HUF grid (see prices.default_daily_cap).
DEFAULT_DAILY_CAP_KWH: Final = 20

# Bus events for automations
EVENT_TRADE: Final = f"{DOMAIN}_trade"
EVENT_STATEMENT: Final = f"{DOMAIN}_statement"
EVENT_PAYMENT: Final = f"{DOMAIN}_payment"
EVENT_SHARED: Final = f"{DOMAIN}_shared"
EVENT_ASSET_APPROVAL: Final = f"{DOMAIN}_asset_approval"
EVENT_READING_FLAGGED: Final = f"{DOMAIN}_reading_flagged"
EVENT_FLAG_DECISION: Final = f"{DOMAIN}_flag_decision"

# Repair issues
ISSUE_UNREACHABLE: Final = "grid_unreachable"
ISSUE_OVER_CAP: Final = "payment_over_cap"
ISSUE_PAYMENT_FAILED: Final = "payment_failed"
ISSUE_KEY_REJECTED: Final = "key_rejected"
REFUSAL_ISSUE_KIND: Final = "reading_refused"
# Refused readings: a text per error code with its own advice
# (docs/developers/error-codes.md); any other code, also one a newer grid
# sends, gets the generic text with the grid's message.
ISSUE_REFUSED_OVER_CAPACITY: Final = "reading_refused_over_capacity"
ISSUE_REFUSED_WINDOW_CLOSED: Final = "reading_refused_window_closed"
ISSUE_REFUSED_UNKNOWN_ASSET: Final = "reading_refused_unknown_asset"
ISSUE_REFUSED_CONFLICT: Final = "reading_refused_reading_conflict"
ISSUE_REFUSED_INVALID: Final = "reading_refused_invalid_field"
ISSUE_REFUSED_OTHER: Final = "reading_refused_other"
REFUSAL_ISSUES: Final = {
    "over_capacity": ISSUE_REFUSED_OVER_CAPACITY,
    "window_closed": ISSUE_REFUSED_WINDOW_CLOSED,
    "unknown_asset": ISSUE_REFUSED_UNKNOWN_ASSET,
    "reading_conflict": ISSUE_REFUSED_CONFLICT,
    "invalid_field": ISSUE_REFUSED_INVALID,
}
# What the grid does not believe of a meter (docs/operators/meters.md): an
# asset waiting for the operator's approval or refused by the operator, and
# readings settled at their plausible bound (a text per flag code; any other
# code, also one a newer grid sends, gets the generic text with the grid's words).
ISSUE_ASSET_WAITING: Final = "asset_waiting"
ISSUE_ASSET_REFUSED: Final = "asset_refused"
FLAG_ISSUE_KIND: Final = "reading_flagged"
ISSUE_FLAGGED_OVER_RATING: Final = "reading_flagged_over_rating"
ISSUE_FLAGGED_CLEAR_SKY: Final = "reading_flagged_above_clear_sky"
ISSUE_FLAGGED_BATTERY: Final = "reading_flagged_battery_over_discharge"
ISSUE_FLAGGED_NOT_APPROVED: Final = "reading_flagged_not_approved"
ISSUE_FLAGGED_OTHER: Final = "reading_flagged_other"
FLAG_ISSUES: Final = {
    "over_rating": ISSUE_FLAGGED_OVER_RATING,
    "above_clear_sky": ISSUE_FLAGGED_CLEAR_SKY,
    "battery_over_discharge": ISSUE_FLAGGED_BATTERY,
    "not_approved": ISSUE_FLAGGED_NOT_APPROVED,
}
UNREACHABLE_INTERVALS: Final = 4  # intervals without contact before a repair issue

STORAGE_VERSION: Final = 1

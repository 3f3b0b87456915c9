"""Units shared by the wire protocol, the grid server and the households.

* Energy: integer watt-hours (Wh).
* Prices: decimal strings in currency per kWh on the wire, at most
  ``PRICE_DECIMALS`` fractional digits; held as integer *price ticks*
  (10^-6 currency per kWh) everywhere else, so comparisons are exact.
* Money: integer *micro-units* (10^-6 of the currency unit, e.g. µEUR).
  One tick times one Wh is 10^-9 currency, i.e. 1/1000 of a micro-unit;
  :func:`energy_cost_nano` keeps that product exact and
  :func:`nano_to_micro` says how it is rounded.
* Time: timezone-aware UTC; delivery intervals are aligned to the Unix epoch
  and named by their start.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

PRICE_DECIMALS = 6
TICKS_PER_UNIT = 10**PRICE_DECIMALS  # price ticks per currency unit (per kWh)
MICRO_PER_UNIT = 10**6  # money micro-units per currency unit
NANO_PER_MICRO = 1000  # one tick x one Wh = 1e-9 currency = 1/1000 micro-unit
WH_PER_KWH = 1000

_DECIMAL_RE = re.compile(rf"^-?(0|[1-9][0-9]{{0,11}})(\.[0-9]{{1,{PRICE_DECIMALS}}})?$")


class UnitError(ValueError):
    """A value does not have the form its unit requires."""


def parse_price(text: object) -> int:
    """Parse a price string such as ``"0.2500"`` into integer ticks (10^-6 /kWh).

    Only plain decimal notation is accepted (no exponent, no ``+``, no
    leading zeros, at most six fractional digits): prices are money, and an
    input that could mean two things must be refused rather than guessed.
    """
    if not isinstance(text, str):
        raise UnitError('must be a decimal string such as "0.2500"')
    match = _DECIMAL_RE.match(text)
    if match is None:
        raise UnitError(
            f"{text!r} is not a decimal price with at most {PRICE_DECIMALS} decimal places"
        )
    negative: bool = text.startswith("-")
    whole, _, frac = text.lstrip("-").partition(".")
    ticks: int = int(whole) * TICKS_PER_UNIT + int(frac.ljust(PRICE_DECIMALS, "0") or "0")
    return -ticks if negative else ticks


def format_price(ticks: int, min_decimals: int = 4) -> str:
    """Format ticks as a decimal string with at least ``min_decimals`` places.

    Trailing zeros beyond ``min_decimals`` are dropped, so ``250000`` gives
    ``"0.2500"`` and ``250050`` gives ``"0.25005"``.
    """
    return _format_fixed(ticks, PRICE_DECIMALS, min_decimals)


def format_money_micro(micro: int, min_decimals: int = 2) -> str:
    """Format micro-units as a decimal string in the currency (``1234567`` → ``"1.234567"``)."""
    return _format_fixed(micro, 6, min_decimals)


def format_nano(nano: int, min_decimals: int = 6) -> str:
    """Format 10^-9 currency units as a decimal string (used for welfare)."""
    return _format_fixed(nano, 9, min_decimals)


def _format_fixed(value: int, decimals: int, min_decimals: int) -> str:
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), 10**decimals)
    digits = str(frac).rjust(decimals, "0").rstrip("0")
    digits = digits.ljust(min(min_decimals, decimals), "0")
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"


def price_to_decimal(ticks: int) -> Decimal:
    return Decimal(ticks).scaleb(-PRICE_DECIMALS)


def energy_cost_nano(price_ticks: int, energy_wh: int) -> int:
    """Exact value of ``energy_wh`` at ``price_ticks`` in 10^-9 currency units."""
    return price_ticks * energy_wh


def nano_to_micro(nano: int, *, toward_grid: bool, payer: bool) -> int:
    """Round an exact 10^-9 amount to micro-units.

    With ``toward_grid`` the rounding never favours the household: what a
    household pays (``payer``) is rounded up, what it receives is rounded
    down, so the remainder booked to the grid's account is never negative.
    Without it the value is rounded half to even.
    """
    if toward_grid:
        q, r = divmod(nano, NANO_PER_MICRO)
        return q + (1 if (r and payer) else 0)
    q, r = divmod(nano, NANO_PER_MICRO)
    twice = 2 * r
    if twice > NANO_PER_MICRO or (twice == NANO_PER_MICRO and q % 2 == 1):
        q += 1
    return q


# --- time --------------------------------------------------------------------

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SECONDS_PER_DAY = 86_400


def check_interval_minutes(minutes: int) -> None:
    if minutes <= 0 or SECONDS_PER_DAY % (minutes * 60) != 0:
        raise UnitError(f"interval length {minutes} min does not divide a day")


def interval_start(moment: datetime, minutes: int) -> datetime:
    """Start of the epoch-aligned interval of ``minutes`` that contains ``moment``."""
    seconds = int((moment - EPOCH).total_seconds())
    length = minutes * 60
    return EPOCH + timedelta(seconds=seconds - seconds % length)


def is_interval_start(moment: datetime, minutes: int) -> bool:
    return moment.tzinfo is not None and interval_start(moment, minutes) == moment


def parse_utc(text: object) -> datetime:
    """Parse an RFC 3339 timestamp in UTC (``Z`` or ``+00:00`` suffix required)."""
    if not isinstance(text, str):
        raise UnitError("must be an RFC 3339 UTC timestamp string")
    if not (text.endswith("Z") or text.endswith("+00:00")):
        raise UnitError(f"{text!r} is not UTC (end it with 'Z')")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UnitError(f"{text!r} is not an RFC 3339 timestamp") from exc
    return moment.astimezone(UTC)


def format_utc(moment: datetime) -> str:
    """Format a UTC instant as ``YYYY-MM-DDTHH:MM:SSZ`` (microseconds only when present)."""
    if moment.tzinfo is None:
        raise UnitError("naive datetime: time must be UTC")
    moment = moment.astimezone(UTC)
    spec = "%Y-%m-%dT%H:%M:%S.%fZ" if moment.microsecond else "%Y-%m-%dT%H:%M:%SZ"
    return moment.strftime(spec)

"""Units shared by the wire protocol, the grid server and the households.

The one home of every unit conversion and of every money rounding rule.

* Energy: integer watt-hours (Wh).
* Prices: decimal strings in currency per kWh on the wire, at most
  ``PRICE_DECIMALS`` fractional digits; held as integer *price ticks*
  (10^-6 currency per kWh) everywhere else, so comparisons are exact.
* Money: integer *micro-units* (10^-6 of the currency unit, e.g. µEUR).
  One tick times one Wh is 10^-9 currency ("nano"), 1/1000 of a micro-unit:
  :func:`energy_cost_nano` keeps that product exact, and sums of such
  products stay exact in nano until they are rounded, once, by one of the
  rules below.
* Ledger units: a ledger counts in its own integer unit (micro-units on the
  local ledger, nanos of IOTA on IOTA), converted at an exact *rate*
  (ledger units per micro-unit, a fraction recorded in each statement).
* Time: timezone-aware UTC; delivery intervals are aligned to the Unix epoch
  and named by their start.

Rounding rules (nothing else rounds money):

=====================================  ==============================  =========================
what                                   rule                            function
=====================================  ==============================  =========================
a settlement line, nano → micro        toward the grid: who pays       :func:`micro_ceil`
                                       rounds up, who receives down    :func:`micro_floor`
a statement in ledger units            against the payer: owed to the  :func:`ledger_amount`
                                       grid up, owed by the grid down
a partial payment back in micro        down (never shows as more)      :func:`paid_micro`
a figure shown, nano → micro           half to even (no bias)          :func:`micro_half_even`
=====================================  ==============================  =========================

The remainders of the first rule are booked to the grid's own account, so
every interval's money balances to the unit.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

PRICE_DECIMALS = 6
TICKS_PER_UNIT = 10**PRICE_DECIMALS  # price ticks per currency unit (per kWh)
# The one bound on every price and fee the grid takes (orders, utility prices,
# zone fees): ±1,000,000 currency per kWh. The clearing engine's integer
# arithmetic holds it, so a price the grid accepts can always be cleared.
MAX_PRICE_TICKS = 10**12
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
    Prices beyond :data:`MAX_PRICE_TICKS` are refused here, for everyone.
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
    if ticks > MAX_PRICE_TICKS:
        bound = MAX_PRICE_TICKS // TICKS_PER_UNIT
        raise UnitError(f"{text!r} is outside -{bound} … {bound} per kWh, the grid's price range")
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


def energy_cost_nano(price_ticks: int, energy_wh: int) -> int:
    """Exact value of ``energy_wh`` at ``price_ticks`` in 10^-9 currency units."""
    return price_ticks * energy_wh


def micro_floor[N: (int, "NDArray[np.int64]")](nano: N) -> N:
    """Nano to micro-units rounded down (what a receiver gets; works on NumPy arrays)."""
    return nano // NANO_PER_MICRO


def micro_ceil[N: (int, "NDArray[np.int64]")](nano: N) -> N:
    """Nano to micro-units rounded up (what a payer pays; works on NumPy arrays)."""
    return -(-nano // NANO_PER_MICRO)


def micro_half_even(nano: int) -> int:
    """Nano to micro-units rounded half to even: for figures shown, never for money moved."""
    q, r = divmod(nano, NANO_PER_MICRO)
    twice = 2 * r
    if twice > NANO_PER_MICRO or (twice == NANO_PER_MICRO and q % 2 == 1):
        q += 1
    return q


# --- ledger units ------------------------------------------------------------

NANOS_PER_IOTA = 10**9


def parse_rate(text: str) -> Fraction:
    """A recorded rate (``"4000"``, ``"10000000/2137"``, ``"0.5"``); positive."""
    try:
        rate = Fraction(text)
    except (ValueError, ZeroDivisionError) as exc:
        raise UnitError(f"{text!r} is not a rate") from exc
    if rate <= 0:
        raise UnitError("a rate must be positive")
    return rate


def format_rate(rate: Fraction) -> str:
    """A rate as it is recorded: ``str(Fraction)``, e.g. ``"1"``, ``"10000000/2137"``."""
    return str(rate)


def rate_from_price(price: str, units_per_coin: int = NANOS_PER_IOTA) -> Fraction:
    """Ledger units per micro-unit when one coin (``units_per_coin`` units) costs ``price``."""
    try:
        value = Decimal(price)
    except InvalidOperation as exc:
        raise UnitError(f"{price!r} is not a decimal price") from exc
    if not value.is_finite() or value <= 0:
        raise UnitError("the price of a coin must be positive")
    return Fraction(units_per_coin) / (Fraction(value) * MICRO_PER_UNIT)


def ledger_amount(amount_micro: int, rate: Fraction) -> int:
    """A statement amount in ledger units, with its sign; rounded against the payer."""
    exact = abs(amount_micro) * rate
    if amount_micro >= 0:
        return math.ceil(exact)  # the participant pays: round up
    return -math.floor(exact)  # the grid pays: round down


def paid_micro(amount_due_micro: int, ledger_due: int, ledger_paid: int, rate: Fraction) -> int:
    """How much of a statement's currency amount a ledger amount settles (same sign).

    Paid in full (in ledger units) is the whole amount; a part is converted
    back and rounded down, so a partial payment never shows as more than it is.
    """
    if ledger_due == 0 or abs(ledger_paid) >= abs(ledger_due):
        return amount_due_micro
    part = min(math.floor(Fraction(abs(ledger_paid)) / rate), abs(amount_due_micro))
    return part if amount_due_micro >= 0 else -part


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
    # isoformat writes the same text as strftime("%Y-%m-%dT%H:%M:%S[.%f]") ten times
    # faster: settling a large grid formats hundreds of thousands of times.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"

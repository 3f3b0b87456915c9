"""Price and money inputs in the grid's currency, bounded as the grid bounds them.

A price limit is a number per kWh in whatever currency the grid uses: 0.25
on a EUR grid, 40 on a JPY grid, 90 on a HUF grid. The only bound is the
protocol's own (:data:`~.client.units.MAX_PRICE_TICKS`), so every limit the
form accepts is one the grid accepts too.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

from homeassistant.helpers import selector

from .client.units import MAX_PRICE_TICKS, PRICE_DECIMALS, TICKS_PER_UNIT
from .const import DEFAULT_DAILY_CAP_KWH

PRICE_BOUND: Final = MAX_PRICE_TICKS // TICKS_PER_UNIT  # currency per kWh, either sign
PRICE_STEP: Final = float(Decimal(1).scaleb(-PRICE_DECIMALS))
# The most a household may let Home Assistant pay in a day without asking,
# in currency units: high enough for any currency's daily energy bill.
MAX_DAILY_CAP: Final = 1_000_000_000


def plain_decimal(value: Decimal, places: int = PRICE_DECIMALS) -> Decimal:
    """``value`` rounded to ``places`` decimals, without trailing zeros or exponent.

    Home Assistant writes a Decimal state with ``str()``: ``0 * Decimal("1e-9")``
    would read ``0E-9``, and a quantized zero ``0.000000``; this reads ``0``.
    """
    rounded = value.quantize(Decimal(1).scaleb(-places)).normalize()
    if rounded.is_zero():
        return Decimal(0)  # not -0
    return rounded.quantize(Decimal(1)) if rounded.as_tuple().exponent > 0 else rounded  # type: ignore[operator]


def default_daily_cap(retail: str) -> float:
    """A day's worth of energy at the retail price, in whole currency units (6 EUR, 620 JPY)."""
    return float(
        (Decimal(retail) * DEFAULT_DAILY_CAP_KWH).to_integral_value(rounding="ROUND_CEILING")
    )


def price_per_kwh_unit(currency: str | None) -> str | None:
    return f"{currency}/kWh" if currency else None


def price_limit_selector(currency: str | None) -> selector.NumberSelector:
    """A box for a price limit in the grid's currency per kWh."""
    config = selector.NumberSelectorConfig(
        min=-PRICE_BOUND, max=PRICE_BOUND, step="any", mode=selector.NumberSelectorMode.BOX
    )
    if unit := price_per_kwh_unit(currency):
        config["unit_of_measurement"] = unit
    return selector.NumberSelector(config)


def daily_cap_selector(currency: str | None) -> selector.NumberSelector:
    config = selector.NumberSelectorConfig(
        min=0, max=MAX_DAILY_CAP, step="any", mode=selector.NumberSelectorMode.BOX
    )
    if currency:
        config["unit_of_measurement"] = currency
    return selector.NumberSelector(config)

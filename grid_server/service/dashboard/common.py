"""Pieces every dashboard view shares: limits, money as text, zones as the page shows them.

Everything is exact: energy in Wh, prices in ticks (10^-6 of the currency
per kWh), money in micro-units, and savings in nano-units (ticks × Wh =
10^-9 of the currency). Amounts that may outgrow a JavaScript number (2^53)
are also given as decimal strings. Conversions and their rounding come from
:mod:`p2p_energy_client.units`, the one owner of money rules.
"""

from __future__ import annotations

from typing import Any, Final

from p2p_energy_client.units import format_money_micro, micro_half_even

MAX_HOURS: Final = 7 * 24
DEFAULT_HOURS: Final = 24
MAX_FILLS: Final = 500
MAX_CURVE_STEPS: Final = 400
PAGE_LIMIT: Final = 500
RECENT: Final = 50


def money(micro: int) -> str:
    """Micro-units as an exact decimal string of the currency (``-1.250000``)."""
    return format_money_micro(micro, 6)


def shown_micro(nano: int) -> int:
    """Savings in nano-units as the page shows them: micro-units, rounded half to even."""
    return micro_half_even(nano)


def zone_view(z: Any) -> dict[str, Any]:
    """A ``zones`` row for the page (a zone without a name is called by its id)."""
    return {
        "id": z.id,
        "name": z.name or z.id,
        "parent": z.parent,
        "fee": z.fee,
        "fee_ticks": int(z.fee_ticks),
        "capacity_up_wh": z.capacity_up_wh,
        "capacity_down_wh": z.capacity_down_wh,
    }


__all__ = [
    "DEFAULT_HOURS",
    "MAX_CURVE_STEPS",
    "MAX_FILLS",
    "MAX_HOURS",
    "PAGE_LIMIT",
    "RECENT",
    "money",
    "shown_micro",
    "zone_view",
]

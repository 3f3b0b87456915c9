"""The order-book JSON format of ``p2p-grid clear`` (issue 2) and its result.

Input::

    {"currency": "EUR", "interval": {"start": "...Z", "minutes": 15},
     "utility": {"retail_price": "0.3000", "feed_in_price": "0.0800"},
     "zones": [{"id": "root"}, {"id": "f1", "parent": "root", "fee": "0.0100",
                "capacity_up_wh": 40000, "capacity_down_wh": 40000}],
     "orders": [{"id": "b1", "zone": "f1", "side": "buy", "energy_wh": 1500,
                 "price": "0.2500"}]}

``currency`` and ``interval`` are optional and only checked; a zone without
``fee`` pays none, a missing capacity is unlimited. Unknown and duplicate
keys are errors, since a misspelt ``capacity_up_wh`` would otherwise silently
mean "unlimited".

Output: ``welfare`` (currency, energy in kWh), ``zones`` in input order,
``fills`` in input order.
"""

from __future__ import annotations

import json
import re
from typing import Any

from p2p_energy_client.units import (
    UnitError,
    check_interval_minutes,
    format_nano,
    format_price,
    is_interval_start,
    parse_price,
    parse_utc,
)

from .book import Book, BookError, Order, Utility, Zone
from .clearing import MarketResult

_CURRENCY = re.compile(r"^[A-Z]{3}$")
_TOP_KEYS = {"currency", "interval", "utility", "zones", "orders"}
_ZONE_KEYS = {"id", "parent", "fee", "capacity_up_wh", "capacity_down_wh"}
_ORDER_KEYS = {"id", "zone", "side", "energy_wh", "price"}


class _Object(dict[str, Any]):
    """A JSON object that remembers keys it saw twice."""

    duplicates: tuple[str, ...] = ()


def _object_pairs(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object()
    twice: list[str] = []
    for key, value in pairs:
        if key in obj:
            twice.append(key)
        obj[key] = value
    obj.duplicates = tuple(twice)
    return obj


def loads_book(text: str) -> Book:
    """Parse and validate a book; :class:`BookError` says what is wrong and where."""
    try:
        data = json.loads(text, object_pairs_hook=_object_pairs, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise BookError("book", f"not valid JSON: {exc}") from exc
    return parse_book(data)


def _no_constant(name: str) -> Any:
    raise BookError("book", f"{name} is not a number JSON allows")


def parse_book(data: Any) -> Book:
    top = _obj(data, "", _TOP_KEYS)
    if "currency" in top and (
        not isinstance(top["currency"], str) or not _CURRENCY.match(top["currency"])
    ):
        raise BookError(
            "currency", f"must be an ISO 4217 code such as 'EUR', not {top['currency']!r}"
        )
    if "interval" in top:
        _check_interval(top["interval"])
    utility_obj = _obj(_required(top, "utility", ""), "utility", {"retail_price", "feed_in_price"})
    utility = Utility(
        retail_ticks=_price(utility_obj, "retail_price", "utility"),
        feed_in_ticks=_price(utility_obj, "feed_in_price", "utility"),
    )
    utility.validate()
    zones = tuple(_zone(item, f"zones[{i}]") for i, item in enumerate(_list(top, "zones")))
    orders = tuple(_order(item, f"orders[{i}]") for i, item in enumerate(_list(top, "orders")))
    return Book(utility, zones, orders)


def _check_interval(value: Any) -> None:
    interval = _obj(value, "interval", {"start", "minutes"})
    minutes = _integer(_required(interval, "minutes", "interval"), "interval.minutes")
    try:
        check_interval_minutes(minutes)
        start = parse_utc(_required(interval, "start", "interval"))
    except UnitError as exc:
        raise BookError("interval", str(exc)) from exc
    if not is_interval_start(start, minutes):
        raise BookError("interval.start", f"is not the start of a {minutes}-minute interval")


def _zone(item: Any, where: str) -> Zone:
    obj = _obj(item, where, _ZONE_KEYS)
    parent = obj.get("parent")
    if parent is not None and not isinstance(parent, str):
        raise BookError(f"{where}.parent", f"must be a zone id string, not {parent!r}")
    return Zone(
        id=_string(obj, "id", where),
        parent=parent,
        fee_ticks=_price(obj, "fee", where) if "fee" in obj else 0,
        capacity_up_wh=_capacity(obj, "capacity_up_wh", where),
        capacity_down_wh=_capacity(obj, "capacity_down_wh", where),
    )


def _order(item: Any, where: str) -> Order:
    obj = _obj(item, where, _ORDER_KEYS)
    side = _required(obj, "side", where)
    if side not in ("buy", "sell"):
        raise BookError(f"{where}.side", f"must be 'buy' or 'sell', not {side!r}")
    energy = _integer(_required(obj, "energy_wh", where), f"{where}.energy_wh")
    if energy < 0:
        raise BookError(f"{where}.energy_wh", f"must not be negative ({energy})")
    return Order(
        id=_string(obj, "id", where),
        zone=_string(obj, "zone", where),
        side=side,
        energy_wh=energy,
        price_ticks=_price(obj, "price", where),
    )


def _path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _obj(value: Any, where: str, keys: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BookError(where or "book", f"must be an object, not {_json_type(value)}")
    for key in getattr(value, "duplicates", ()):
        raise BookError(_path(where, key), "appears twice")
    unknown = sorted(set(value) - keys)
    if unknown:
        raise BookError(
            _path(where, unknown[0]), f"unknown field (expected one of {', '.join(sorted(keys))})"
        )
    return value


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def _required(obj: dict[str, Any], key: str, where: str) -> Any:
    if key not in obj:
        raise BookError(_path(where, key), "missing")
    return obj[key]


def _list(obj: dict[str, Any], key: str) -> list[Any]:
    value = _required(obj, key, "")
    if not isinstance(value, list):
        raise BookError(key, f"must be a list, not {_json_type(value)}")
    return value


def _string(obj: dict[str, Any], key: str, where: str) -> str:
    value = _required(obj, key, where)
    if not isinstance(value, str) or not value:
        raise BookError(f"{where}.{key}", f"must be a non-empty string, not {value!r}")
    return value


def _integer(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BookError(where, f"must be an integer, not {value!r}")
    return value


def _capacity(obj: dict[str, Any], key: str, where: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    value = _integer(value, f"{where}.{key}")
    if value < 0:
        raise BookError(f"{where}.{key}", f"must not be negative ({value})")
    return value


def _price(obj: dict[str, Any], key: str, where: str) -> int:
    try:
        return parse_price(_required(obj, key, where))
    except UnitError as exc:
        raise BookError(f"{where}.{key}", str(exc)) from exc


def result_json(result: MarketResult) -> dict[str, Any]:
    zones = [
        {
            "id": z.zone,
            "price": format_price(z.price_ticks),
            "utility_buy_wh": z.utility_buy_wh,
            "utility_sell_wh": z.utility_sell_wh,
            "flow_to_parent_wh": z.flow_to_parent_wh,
        }
        for z in result.zones()
    ]
    fills = [{"id": order_id, "filled_wh": filled} for order_id, filled in result.fill_of().items()]
    return {"welfare": format_nano(result.welfare_nano), "zones": zones, "fills": fills}


def dumps_result(result: MarketResult) -> str:
    """The result as JSON text, one zone and one fill per line (diff- and grep-friendly)."""
    data = result_json(result)
    lines = ["{", f'  "welfare": {json.dumps(data["welfare"])},']
    for key, closing in (("zones", "],"), ("fills", "]")):
        items = [json.dumps(item, ensure_ascii=False) for item in data[key]]
        lines.append(f'  "{key}": [' + ("" if items else closing))
        if items:
            lines.append(",\n".join(f"    {item}" for item in items))
            lines.append(f"  {closing}")
    lines.append("}")
    return "\n".join(lines) + "\n"

"""Sources and consumer meters: from config subentries to the grid's declarations."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from homeassistant.config_entries import ConfigSubentry

from .client.household import Asset
from .client.protocol import MeterDecl, SourceDecl, SourceKind
from .const import CONF_ASSET_ID, CONF_ENERGY_ENTITY, CONF_KIND, CONF_RATED_POWER, SUBENTRY_SOURCE


def new_asset_id() -> str:
    """The id the grid knows an asset by; chosen before the subentry exists."""
    return f"a{secrets.token_hex(8)}"


def asset_id(sub: ConfigSubentry) -> str:
    return str(sub.data[CONF_ASSET_ID])


def asset_of(sub: ConfigSubentry) -> Asset:
    role = "source" if sub.subentry_type == SUBENTRY_SOURCE else "meter"
    power = sub.data.get(CONF_RATED_POWER)
    return Asset(asset_id(sub), role, int(power) if power else None)


def declaration(subentry_type: str, title: str, data: Mapping[str, Any]) -> SourceDecl | MeterDecl:
    power = data.get(CONF_RATED_POWER)
    if subentry_type == SUBENTRY_SOURCE:
        return SourceDecl(data[CONF_ASSET_ID], title, SourceKind(data[CONF_KIND]), int(power or 0))
    return MeterDecl(data[CONF_ASSET_ID], title, int(power) if power else None)


def declarations(
    items: Iterable[tuple[str, str, Mapping[str, Any]]],
) -> tuple[tuple[SourceDecl, ...], tuple[MeterDecl, ...]]:
    """The grid's view of (subentry type, title, data) triples, sorted by id."""
    decls = [declaration(kind, title, data) for kind, title, data in items]
    sources = sorted((d for d in decls if isinstance(d, SourceDecl)), key=lambda d: d.id)
    meters = sorted((d for d in decls if isinstance(d, MeterDecl)), key=lambda d: d.id)
    return tuple(sources), tuple(meters)


def subentry_items(
    subentries: Mapping[str, ConfigSubentry],
) -> list[tuple[str, str, Mapping[str, Any]]]:
    return [(s.subentry_type, s.title, s.data) for s in subentries.values()]


def meter_entities(subentries: Mapping[str, ConfigSubentry]) -> dict[str, str]:
    """Asset id → the energy sensor that measures it."""
    return {asset_id(s): s.data[CONF_ENERGY_ENTITY] for s in subentries.values()}

"""Home Assistant's side of the grid client: keys and sessions from the config entry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.helpers.aiohttp_client import async_get_clientsession

from .client.crypto import KeyPair
from .client.grid_client import GridClient
from .const import CONF_GRID_ID, CONF_GRID_URL, CONF_SECRET_KEY


def keys_from_entry(data: Mapping[str, Any]) -> KeyPair:
    return KeyPair.from_hex(data[CONF_SECRET_KEY])


def create_client(
    hass: HomeAssistant,
    url: str,
    keys: KeyPair,
    *,
    grid_id: str | None = None,
    last_seq: int = 0,
) -> GridClient:
    """A grid client on Home Assistant's shared HTTP session."""
    return GridClient(
        url,
        keys,
        session=async_get_clientsession(hass),
        grid_id=grid_id,
        last_seq=last_seq,
    )


def client_from_entry(
    hass: HomeAssistant, data: Mapping[str, Any], last_seq: int = 0
) -> GridClient:
    return create_client(
        hass,
        data[CONF_GRID_URL],
        keys_from_entry(data),
        grid_id=data.get(CONF_GRID_ID),
        last_seq=last_seq,
    )

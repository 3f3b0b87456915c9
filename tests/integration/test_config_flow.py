"""Config flow against a real grid server: join, import a key, every error, reauth, reconfigure."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from freezegun.api import TickingDateTimeFactory
from homeassistant.config_entries import SOURCE_USER
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType

from custom_components.p2p_energy.client.crypto import KeyPair
from custom_components.p2p_energy.const import (
    CONF_ADDRESS,
    CONF_GRID_URL,
    CONF_INVITATION,
    CONF_KEY_SOURCE,
    CONF_NAME,
    CONF_SECRET_KEY,
    DOMAIN,
    KEY_GENERATE,
    KEY_IMPORT,
)
from tests.support.grid_server import RunningGrid

from .conftest import GRID_ID, START, Member


def user_input(grid: RunningGrid, code: str, **extra: str) -> dict[str, str]:
    return {
        CONF_GRID_URL: grid.url,
        CONF_INVITATION: code,
        CONF_NAME: "Rooftop house",
        CONF_KEY_SOURCE: KEY_GENERATE,
        **extra,
    }


async def start(hass: HomeAssistant) -> str:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    return result["flow_id"]


async def test_join_with_generated_key(hass: HomeAssistant, grid: RunningGrid) -> None:
    flow_id = await start(hass)
    code = await grid.invite(zone="feeder-1")
    result = await hass.config_entries.flow.async_configure(flow_id, user_input(grid, code))
    assert result["type"] is FlowResultType.CREATE_ENTRY
    data = result["data"]
    assert result["title"] == "Test grid: Rooftop house"
    assert result["result"].unique_id == f"{GRID_ID}_{data[CONF_ADDRESS]}"
    keys = KeyPair.from_hex(data[CONF_SECRET_KEY])
    assert keys.address == data[CONF_ADDRESS]
    # The grid knows the household by that key, in the invitation's zone.
    participant = await grid.client(keys).me()
    assert participant.zone == "feeder-1"
    assert participant.name == "Rooftop house"


async def test_join_with_imported_iota_key(
    hass: HomeAssistant, grid: RunningGrid, iota_vectors: dict
) -> None:
    vector = iota_vectors["ed25519_keypairs"][0]
    flow_id = await start(hass)
    code = await grid.invite()
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(grid, code, **{CONF_KEY_SOURCE: KEY_IMPORT})
    )
    assert result["step_id"] == "import_key"
    result = await hass.config_entries.flow.async_configure(flow_id, {CONF_SECRET_KEY: "not hex"})
    assert result["errors"] == {CONF_SECRET_KEY: "invalid_key"}
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_SECRET_KEY: vector["secret_hex"]}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_ADDRESS] == vector["address"]


async def test_invitation_errors_are_shown(
    hass: HomeAssistant, grid: RunningGrid, clock: TickingDateTimeFactory
) -> None:
    flow_id = await start(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(grid, "NO-SUCH-CODE")
    )
    assert result["errors"] == {CONF_INVITATION: "invalid_invitation"}

    used = await grid.invite()
    await grid.client().join(used, "Someone else")
    result = await hass.config_entries.flow.async_configure(flow_id, user_input(grid, used))
    assert result["errors"] == {CONF_INVITATION: "invitation_used"}

    expiring = await grid.invite(expires_at=START + timedelta(minutes=1))
    clock.move_to(clock() + timedelta(minutes=2))
    result = await hass.config_entries.flow.async_configure(flow_id, user_input(grid, expiring))
    assert result["errors"] == {CONF_INVITATION: "invitation_expired"}

    # The form is still usable: a good code now succeeds.
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(grid, await grid.invite())
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_cannot_connect_and_bad_name(hass: HomeAssistant, grid: RunningGrid) -> None:
    flow_id = await start(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(grid, "X", **{CONF_NAME: "\u202eevil"})
    )
    assert result["errors"] == {CONF_NAME: "invalid_name"}
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(grid, "X", **{CONF_GRID_URL: "http://127.0.0.1:9"})
    )
    assert result["errors"] == {"base": "cannot_connect"}


async def test_already_configured(
    hass: HomeAssistant, grid: RunningGrid, join: Callable[..., Awaitable[Member]]
) -> None:
    member = await join("Existing")
    member.entry(grid).add_to_hass(hass)
    flow_id = await start(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(grid, await grid.invite(), **{CONF_KEY_SOURCE: KEY_IMPORT})
    )
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_SECRET_KEY: member.keys.seed_hex}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_key_already_registered_elsewhere(
    hass: HomeAssistant, grid: RunningGrid, join: Callable[..., Awaitable[Member]]
) -> None:
    member = await join("On another installation")
    flow_id = await start(hass)
    await hass.config_entries.flow.async_configure(
        flow_id, user_input(grid, await grid.invite(), **{CONF_KEY_SOURCE: KEY_IMPORT})
    )
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_SECRET_KEY: member.keys.seed_hex}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_registered"

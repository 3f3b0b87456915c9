"""The config flow against a real grid server.

Joining (a generated or an imported key), every refusal of the join form,
reauthentication, reconfiguration to a new address, the options flow, and
the subentry flows that declare sources and consumer meters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from freezegun.api import TickingDateTimeFactory
from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import issue_registry as ir

from custom_components.p2p_energy.client.crypto import KeyPair
from custom_components.p2p_energy.client.invitation import format_invitation
from custom_components.p2p_energy.const import (
    CONF_ADDRESS,
    CONF_ASSET_ID,
    CONF_AUTO_PAY,
    CONF_DAILY_CAP,
    CONF_ENERGY_ENTITY,
    CONF_FORECAST_ENTITY,
    CONF_GRID_URL,
    CONF_INVITATION,
    CONF_KEY_SOURCE,
    CONF_KIND,
    CONF_MAX_BUY_PRICE,
    CONF_MIN_SELL_PRICE,
    CONF_NAME,
    CONF_RATED_POWER,
    CONF_SECRET_KEY,
    CONF_STRATEGY,
    CONF_TRADE_AHEAD,
    CONF_TRADING,
    DOMAIN,
    KEY_GENERATE,
    KEY_IMPORT,
    SUBENTRY_METER,
    SUBENTRY_SOURCE,
)
from grid_server.config import PriceConfig
from tests.support.grid_server import RunningGrid
from tests.support.home_assistant import (
    GRID_ID,
    MINUTE,
    START,
    UNREACHABLE_URL,
    Member,
    add_asset,
    advance,
    energy_sensor,
    household_keys,
    join_grid,
    meter,
    not_a_grid,
    reauth_flows,
    serve_grid,
    setup_member,
    source,
    start_subentry_reconfigure,
    suggested,
)


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


# --- joining: the user step ---------------------------------------------------------


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


async def test_join_with_one_pasted_link(hass: HomeAssistant, grid: RunningGrid) -> None:
    """The invitation link carries the grid's address: nothing else to type."""
    flow_id = await start(hass)
    link = format_invitation(grid.url, await grid.invite(zone="feeder-1"))
    result = await hass.config_entries.flow.async_configure(
        flow_id,
        {CONF_INVITATION: f"  {link}  ", CONF_NAME: "Pasted", CONF_KEY_SOURCE: KEY_GENERATE},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_GRID_URL] == grid.url
    assert result["options"][CONF_DAILY_CAP] == 6.0  # 20 kWh at the 0.30 retail price
    # The next step is shown, with the address to fund.
    assert result["description"] == "joined"
    assert result["description_placeholders"] == {
        "grid": "Test grid",
        "address": result["data"][CONF_ADDRESS],
        "currency": "EUR",
    }
    participant = await grid.client(KeyPair.from_hex(result["data"][CONF_SECRET_KEY])).me()
    assert participant.zone == "feeder-1"


async def test_join_with_a_link_and_the_same_url(hass: HomeAssistant, grid: RunningGrid) -> None:
    flow_id = await start(hass)
    link = format_invitation(grid.url, await grid.invite())
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(grid, link, **{CONF_GRID_URL: grid.url + "/"})
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


def _no_url(grid: RunningGrid, code: str) -> dict[str, str]:
    return {CONF_INVITATION: code, CONF_NAME: "Typist", CONF_KEY_SOURCE: KEY_GENERATE}


def _other_url(grid: RunningGrid, code: str) -> dict[str, str]:
    link = format_invitation("https://elsewhere.example", code)
    return {**_no_url(grid, link), CONF_GRID_URL: grid.url}


def _bad_url(grid: RunningGrid, code: str) -> dict[str, str]:
    return {**_no_url(grid, code), CONF_GRID_URL: "grid.example.org"}


def _not_a_link(grid: RunningGrid, code: str) -> dict[str, str]:
    return {**_no_url(grid, f"{grid.url}/invite#{code}")}


def _link_without_code(grid: RunningGrid, code: str) -> dict[str, str]:
    return {**_no_url(grid, f"{grid.url}/join#")}


def _not_a_code(grid: RunningGrid, code: str) -> dict[str, str]:
    return {**_no_url(grid, "0189-!!"), CONF_GRID_URL: grid.url}


@pytest.mark.parametrize(
    ("form", "errors"),
    [
        (_no_url, {CONF_GRID_URL: "url_required"}),
        (_other_url, {CONF_GRID_URL: "url_mismatch"}),
        (_bad_url, {CONF_GRID_URL: "invalid_url"}),
        (_not_a_link, {CONF_INVITATION: "invalid_invitation_format"}),
        (_link_without_code, {CONF_INVITATION: "invalid_invitation_format"}),
        (_not_a_code, {CONF_INVITATION: "invalid_invitation_format"}),
    ],
    ids=[
        "bare-code-without-url",
        "link-for-another-url",
        "url-not-http",
        "not-a-join-link",
        "link-without-code",
        "not-a-code",
    ],
)
async def test_join_refuses_what_was_pasted(
    hass: HomeAssistant,
    grid: RunningGrid,
    form: Callable[[RunningGrid, str], dict[str, str]],
    errors: dict[str, str],
) -> None:
    """Refused before anything is sent: the invitation is not used up."""
    flow_id = await start(hass)
    code = await grid.invite()
    result = await hass.config_entries.flow.async_configure(flow_id, form(grid, code))
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == errors
    assert result["description_placeholders"]["example_link"].startswith("https://")
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(grid, format_invitation(grid.url, code))
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_join_survives_a_reply_that_is_not_a_grid(
    hass: HomeAssistant, grid: RunningGrid, caplog: pytest.LogCaptureFixture
) -> None:
    """A web server that is not a grid answers 200 with a page: ``unknown``, not a crash."""
    flow_id = await start(hass)
    async with not_a_grid() as url:
        result = await hass.config_entries.flow.async_configure(
            flow_id, user_input(grid, await grid.invite(), **{CONF_GRID_URL: url})
        )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "unknown"}
    assert f"Unexpected error while joining the grid at {url}" in caplog.text
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(grid, await grid.invite())
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


@pytest.mark.parametrize("form", ["secret_hex", "bech32_secret"], ids=["hex", "iotaprivkey"])
async def test_join_with_imported_iota_key(
    hass: HomeAssistant, grid: RunningGrid, iota_vectors: dict[str, Any], form: str
) -> None:
    """The key as an IOTA wallet exports it (iotaprivkey1…) or as 64 hex characters."""
    vector = iota_vectors["ed25519_keypairs"][0]
    flow_id = await start(hass)
    code = await grid.invite()
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(grid, code, **{CONF_KEY_SOURCE: KEY_IMPORT})
    )
    assert result["step_id"] == "import_key"
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_SECRET_KEY: vector[form]}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_ADDRESS] == vector["address"]


@pytest.mark.parametrize(
    "secret",
    ["not hex", "0x" + "ab" * 16, "iotaprivkey1qqqqqqqq", "iotaprivkey1" + "q" * 59],
    ids=["not-hex", "16-bytes", "iotaprivkey-short", "iotaprivkey-bad-checksum"],
)
async def test_import_key_refused(
    hass: HomeAssistant, grid: RunningGrid, iota_vectors: dict[str, Any], secret: str
) -> None:
    flow_id = await start(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(grid, await grid.invite(), **{CONF_KEY_SOURCE: KEY_IMPORT})
    )
    result = await hass.config_entries.flow.async_configure(flow_id, {CONF_SECRET_KEY: secret})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "import_key"
    assert result["errors"] == {CONF_SECRET_KEY: "invalid_key"}
    # The form is still usable: a good key now joins.
    vector = iota_vectors["ed25519_keypairs"][0]
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_SECRET_KEY: vector["secret_hex"]}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_ADDRESS] == vector["address"]


async def unknown_code(grid: RunningGrid, clock: TickingDateTimeFactory) -> str:
    return "NO-SUCH-CODE"


async def used_code(grid: RunningGrid, clock: TickingDateTimeFactory) -> str:
    code = await grid.invite()
    await grid.client(household_keys("Someone else")).join(code, "Someone else")
    return code


async def expired_code(grid: RunningGrid, clock: TickingDateTimeFactory) -> str:
    code = await grid.invite(expires_at=START + MINUTE)
    clock.move_to(clock() + 2 * MINUTE)
    return code


@pytest.mark.parametrize(
    ("invitation", "error"),
    [
        (unknown_code, "invalid_invitation"),
        (used_code, "invitation_used"),
        (expired_code, "invitation_expired"),
    ],
    ids=["unknown", "used", "expired"],
)
async def test_join_refuses_the_invitation(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    invitation: Callable[[RunningGrid, TickingDateTimeFactory], Awaitable[str]],
    error: str,
) -> None:
    flow_id = await start(hass)
    code = await invitation(grid, clock)
    result = await hass.config_entries.flow.async_configure(flow_id, user_input(grid, code))
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_INVITATION: error}
    # The form is still usable: a good code now succeeds.
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(grid, await grid.invite())
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


@pytest.mark.parametrize(
    ("change", "errors"),
    [
        ({CONF_NAME: "\u202eevil"}, {CONF_NAME: "invalid_name"}),
        ({CONF_GRID_URL: UNREACHABLE_URL}, {"base": "cannot_connect"}),
    ],
    ids=["invalid-name", "cannot-connect"],
)
async def test_join_form_refused(
    hass: HomeAssistant, grid: RunningGrid, change: dict[str, str], errors: dict[str, str]
) -> None:
    flow_id = await start(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(grid, "X", **change)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == errors
    assert hass.config_entries.async_entries(DOMAIN) == []
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(grid, await grid.invite())
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_join_refused_after_too_many_wrong_codes(
    hass: HomeAssistant, grid: RunningGrid
) -> None:
    flow_id = await start(hass)

    def form(code: str) -> dict[str, str]:
        return {
            CONF_GRID_URL: grid.url,
            CONF_INVITATION: code,
            CONF_NAME: "Guesser",
            CONF_KEY_SOURCE: KEY_GENERATE,
        }

    # Someone guesses codes: the grid allows 20 failures an hour per address.
    for attempt in range(20):
        guess = f"GUES-SAAA-{chr(ord('A') + attempt)}"  # well-formed codes the grid never issued
        result = await hass.config_entries.flow.async_configure(flow_id, form(guess))
        assert result["errors"] == {CONF_INVITATION: "invalid_invitation"}
    # Now even a good code is refused, and the form says why.
    result = await hass.config_entries.flow.async_configure(flow_id, form(await grid.invite()))
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    assert result["errors"] == {"base": "grid_refused"}
    assert "too many failed invitation codes" in result["description_placeholders"]["reason"]
    assert hass.config_entries.async_entries(DOMAIN) == []


@pytest.mark.parametrize(
    ("in_home_assistant", "reason"),
    [(True, "already_configured"), (False, "already_registered")],
    ids=["already-configured", "registered-elsewhere"],
)
async def test_join_with_a_member_key_aborts(
    hass: HomeAssistant,
    grid: RunningGrid,
    join: Callable[..., Awaitable[Member]],
    in_home_assistant: bool,
    reason: str,
) -> None:
    """A key that is a member already: here (configured) or on another installation."""
    member = await join("Existing")
    if in_home_assistant:
        member.entry(grid).add_to_hass(hass)
    flow_id = await start(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(grid, await grid.invite(), **{CONF_KEY_SOURCE: KEY_IMPORT})
    )
    assert result["step_id"] == "import_key"
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_SECRET_KEY: member.keys.seed_hex}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == reason
    assert len(hass.config_entries.async_entries(DOMAIN)) == int(in_home_assistant)


# --- reauthentication -------------------------------------------------------------------


async def test_reauth_after_removal(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    join: Callable[..., Awaitable[Member]],
) -> None:
    member = await join("Evicted")
    entry = member.entry(grid)
    await setup_member(hass, entry)
    await grid.grid.operator.set_participant_status(member.keys.address, "removed")
    await advance(hass, grid, clock, MINUTE)

    assert ir.async_get(hass).async_get_issue(DOMAIN, f"key_rejected_{entry.entry_id}")
    (flow,) = reauth_flows(hass)
    result = await hass.config_entries.flow.async_configure(
        flow["flow_id"], {CONF_INVITATION: "WRONG"}
    )
    assert result["errors"] == {CONF_INVITATION: "invalid_invitation"}
    before = entry.runtime_data
    with patch.object(
        hass.config_entries,
        "async_schedule_reload",
        wraps=hass.config_entries.async_schedule_reload,
    ) as reload:
        result = await hass.config_entries.flow.async_configure(
            flow["flow_id"], {CONF_INVITATION: await grid.invite()}
        )
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "reauth_successful"
        await hass.async_block_till_done()
    reload.assert_called_once_with(entry.entry_id)  # the flow's reload, and no second
    assert entry.state is ConfigEntryState.LOADED
    assert entry.runtime_data is not before
    assert (await grid.client(member.keys).me()).status == "active"


async def test_reauth_with_a_pasted_link(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    join: Callable[..., Awaitable[Member]],
) -> None:
    """The new invitation as a link, as the operator hands it out; a garbled one is named."""
    member = await join("Readmitted")
    entry = member.entry(grid)
    await setup_member(hass, entry)
    await grid.grid.operator.set_participant_status(member.keys.address, "removed")
    await advance(hass, grid, clock, MINUTE)
    (flow,) = reauth_flows(hass)
    result = await hass.config_entries.flow.async_configure(
        flow["flow_id"], {CONF_INVITATION: f"{grid.url}/join#"}
    )
    assert result["errors"] == {CONF_INVITATION: "invalid_invitation_format"}
    link = format_invitation(grid.url, await grid.invite())
    result = await hass.config_entries.flow.async_configure(
        flow["flow_id"], {CONF_INVITATION: link}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    assert (await grid.client(member.keys).me()).status == "active"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_reauth_refused_while_the_key_is_still_a_member(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    join: Callable[..., Awaitable[Member]],
) -> None:
    member = await join("Paused")
    entry = member.entry(grid)
    await setup_member(hass, entry)
    await grid.grid.operator.set_participant_status(member.keys.address, "suspended")
    await advance(hass, grid, clock, MINUTE)
    (flow,) = reauth_flows(hass)
    # The operator reinstates the household before its owner enters a new code:
    # the grid refuses the join (the key is a member) and the form says so.
    await grid.grid.operator.set_participant_status(member.keys.address, "active")
    result = await hass.config_entries.flow.async_configure(
        flow["flow_id"], {CONF_INVITATION: await grid.invite()}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reauth_confirm"
    assert result["errors"] == {"base": "grid_refused"}
    assert "already a member" in result["description_placeholders"]["reason"]
    assert result["description_placeholders"]["grid_url"] == grid.url
    assert await hass.config_entries.async_unload(entry.entry_id)


# --- reconfiguration ----------------------------------------------------------------------


@asynccontextmanager
async def nothing_there(tmp_path: Path) -> AsyncIterator[str]:
    yield UNREACHABLE_URL


@asynccontextmanager
async def another_grid(tmp_path: Path) -> AsyncIterator[str]:
    async with serve_grid(tmp_path / "other", id="other-grid") as other:
        yield other.url


@asynccontextmanager
async def same_grid_fresh_database(tmp_path: Path) -> AsyncIterator[str]:
    """The grid's id, but a fresh database: the household is not a member there."""
    async with serve_grid(tmp_path / "fresh") as fresh:
        yield fresh.url


@pytest.mark.parametrize(
    ("address", "error", "reason"),
    [
        (another_grid, "wrong_grid", ""),
        (nothing_there, "cannot_connect", ""),
        (same_grid_fresh_database, "key_refused", "not a member"),
    ],
    ids=["wrong-grid", "cannot-connect", "key-refused"],
)
async def test_reconfigure_refused(
    hass: HomeAssistant,
    grid: RunningGrid,
    tmp_path: Path,
    join: Callable[..., Awaitable[Member]],
    address: Callable[[Path], AbstractAsyncContextManager[str]],
    error: str,
    reason: str,
) -> None:
    entry = (await join("Mover")).entry(grid)
    await setup_member(hass, entry)
    result = await entry.start_reconfigure_flow(hass)
    assert result["step_id"] == "reconfigure"
    assert suggested(result) == {CONF_GRID_URL: grid.url}
    async with address(tmp_path) as url:
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_GRID_URL: url}
        )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": error}
    shown = result["description_placeholders"]["reason"]
    if reason:
        assert reason in shown  # the grid's own words
    else:
        assert shown == ""
    assert suggested(result) == {CONF_GRID_URL: url}  # what the owner typed stays
    assert entry.data[CONF_GRID_URL] == grid.url
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_reconfigure_to_a_new_address(
    hass: HomeAssistant,
    grid: RunningGrid,
    tmp_path: Path,
    join: Callable[..., Awaitable[Member]],
) -> None:
    entry = (await join("Mover")).entry(grid)
    await setup_member(hass, entry)
    result = await entry.start_reconfigure_flow(hass)
    assert result["step_id"] == "reconfigure"
    # The grid moved: the same database served at a new address.
    async with serve_grid(tmp_path) as moved:
        before = entry.runtime_data
        with patch.object(
            hass.config_entries,
            "async_schedule_reload",
            wraps=hass.config_entries.async_schedule_reload,
        ) as reload:
            result = await hass.config_entries.flow.async_configure(
                result["flow_id"], {CONF_GRID_URL: moved.url + "/"}
            )
            assert result["type"] is FlowResultType.ABORT
            assert result["reason"] == "reconfigure_successful"
            assert entry.data[CONF_GRID_URL] == moved.url
            await hass.async_block_till_done()
        # One reload, by the flow; the update listener leaves it alone.
        reload.assert_called_once_with(entry.entry_id)
        assert entry.runtime_data is not before
        assert entry.state is ConfigEntryState.LOADED
        assert entry.runtime_data.household.connected
        assert await hass.config_entries.async_unload(entry.entry_id)


# --- options ------------------------------------------------------------------------------


async def test_options_in_a_currency_with_large_prices(
    hass: HomeAssistant, tmp_path: Path, clock: TickingDateTimeFactory
) -> None:
    """On a JPY grid prices are tens per kWh and a day's bill thousands: the options save."""
    prices = (PriceConfig(retail="31", feed_in="8.5"),)
    async with serve_grid(tmp_path / "jpy", currency="JPY", prices=prices) as yen:
        entry = (await join_grid(yen, "Tokyo")).entry(yen)
        await setup_member(hass, entry)
        # Without a cap set, 20 kWh at retail: 620 yen, not 5.
        assert entry.runtime_data.household.options.daily_cap_micro == 620_000_000
        result = await hass.config_entries.options.async_init(entry.entry_id)
        result = await hass.config_entries.options.async_configure(
            result["flow_id"],
            {
                CONF_TRADING: True,
                CONF_STRATEGY: "reserve",
                CONF_MIN_SELL_PRICE: 9.5,
                CONF_MAX_BUY_PRICE: 30,
                CONF_DAILY_CAP: 25_000,
                CONF_TRADE_AHEAD: 4,
                CONF_AUTO_PAY: True,
            },
        )
        assert result["type"] is FlowResultType.CREATE_ENTRY
        await hass.async_block_till_done()
        options = entry.runtime_data.household.options
        assert (options.min_sell_price, options.max_buy_price) == ("9.5", "30")
        assert options.daily_cap_micro == 25_000_000_000
        assert await hass.config_entries.async_unload(entry.entry_id)


def _cumulative_meter(hass: HomeAssistant) -> str:
    energy_sensor(hass, "sensor.pv_total", 1234.5)
    return "sensor.pv_total"


def _power_sensor(hass: HomeAssistant) -> str:
    hass.states.async_set("sensor.pv_power", "2100", {"unit_of_measurement": "W"})
    return "sensor.pv_power"


@pytest.mark.parametrize(
    ("sensor", "error"),
    [(_cumulative_meter, "cumulative_forecast"), (_power_sensor, "not_forecast_sensor")],
    ids=["cumulative-meter", "not-energy"],
)
async def test_options_refuse_a_forecast_that_is_not_one(
    hass: HomeAssistant,
    grid: RunningGrid,
    join: Callable[..., Awaitable[Member]],
    sensor: Callable[[HomeAssistant], str],
    error: str,
) -> None:
    entry = (await join()).entry(grid)
    await setup_member(hass, entry)
    options = {
        CONF_TRADING: True,
        CONF_STRATEGY: "reserve",
        CONF_MIN_SELL_PRICE: 0.08,
        CONF_MAX_BUY_PRICE: 0.3,
        CONF_DAILY_CAP: 5,
        CONF_TRADE_AHEAD: 4,
        CONF_AUTO_PAY: True,
    }
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**options, CONF_FORECAST_ENTITY: sensor(hass)}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_FORECAST_ENTITY: error}
    # Forecast.Solar's "energy next hour": kWh, no state class.
    hass.states.async_set(
        "sensor.energy_next_hour", "1.2", {"unit_of_measurement": "kWh", "device_class": "energy"}
    )
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**options, CONF_FORECAST_ENTITY: "sensor.energy_next_hour"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert entry.runtime_data.coordinator.forecast_entity == "sensor.energy_next_hour"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_options_flow(
    hass: HomeAssistant, grid: RunningGrid, join: Callable[..., Awaitable[Member]]
) -> None:
    entry = (await join()).entry(grid)
    await setup_member(hass, entry)
    household = entry.runtime_data.household
    result = await hass.config_entries.options.async_init(entry.entry_id)
    options = {
        CONF_TRADING: True,
        CONF_STRATEGY: "cautious",
        CONF_MIN_SELL_PRICE: 0.2,
        CONF_MAX_BUY_PRICE: 0.1,
        CONF_DAILY_CAP: 3.5,
        CONF_TRADE_AHEAD: 8,
        CONF_AUTO_PAY: False,
    }
    # Buying for less than the household sells for is refused.
    result = await hass.config_entries.options.async_configure(result["flow_id"], options)
    assert result["errors"] == {CONF_MAX_BUY_PRICE: "price_order"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**options, CONF_MAX_BUY_PRICE: 0.29}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert household.options.strategy == "cautious"
    assert household.options.min_sell_price == "0.2"
    assert household.options.daily_cap_micro == 3_500_000
    assert household.options.trade_ahead == 8
    assert household.options.auto_pay is False
    assert entry.state is ConfigEntryState.LOADED  # options apply without a reload
    assert entry.runtime_data.household is household


# --- subentries: sources and consumer meters --------------------------------------------


@pytest.mark.parametrize(
    ("kind", "data", "errors"),
    [
        (
            SUBENTRY_SOURCE,
            source("PV", "sensor.power", 5000),
            {CONF_ENERGY_ENTITY: "not_energy_sensor"},
        ),
        (
            SUBENTRY_METER,
            meter("Heat pump", "sensor.removed_meter"),
            {CONF_ENERGY_ENTITY: "not_energy_sensor"},
        ),
        (
            SUBENTRY_METER,
            meter("\u202e", "sensor.house"),
            {CONF_NAME: "invalid_name"},
        ),
        (
            SUBENTRY_METER,
            meter("  \u202e  ", "sensor.removed_meter"),
            {CONF_NAME: "invalid_name", CONF_ENERGY_ENTITY: "not_energy_sensor"},
        ),
    ],
    ids=["power-sensor", "missing-sensor", "invalid-name", "invalid-name-and-missing-sensor"],
)
async def test_asset_form_refused(
    hass: HomeAssistant,
    grid: RunningGrid,
    join: Callable[..., Awaitable[Member]],
    kind: str,
    data: dict[str, object],
    errors: dict[str, str],
) -> None:
    member = await join()
    entry = member.entry(grid)
    await setup_member(hass, entry)
    hass.states.async_set("sensor.power", "1200", {"unit_of_measurement": "W"})
    energy_sensor(hass, "sensor.house", 1.0)
    result = await add_asset(hass, entry.entry_id, kind, data)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == errors
    assert entry.subentries == {}
    me = await grid.client(member.keys).me()
    assert (me.assets.sources, me.assets.meters) == ((), ())
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_consumer_cannot_declare_a_source(
    hass: HomeAssistant, grid: RunningGrid, join: Callable[..., Awaitable[Member]]
) -> None:
    member = await join("Flat", role="consumer")
    entry = member.entry(grid)
    await setup_member(hass, entry)
    energy_sensor(hass, "sensor.balcony_pv", 1.0)
    energy_sensor(hass, "sensor.flat_import", 1.0)
    result = await add_asset(
        hass, entry.entry_id, SUBENTRY_SOURCE, source("Balcony PV", "sensor.balcony_pv", 600)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "grid_refused"}
    assert "consumer role" in result["description_placeholders"]["reason"]
    assert entry.subentries == {}
    # A consumer meter is fine.
    result = await add_asset(
        hass, entry.entry_id, SUBENTRY_METER, meter("Flat", "sensor.flat_import")
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    me = await grid.client(member.keys).me()
    assert (me.assets.sources, [m.name for m in me.assets.meters]) == ((), ["Flat"])
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_asset_added_while_the_grid_is_down(
    hass: HomeAssistant, tmp_path: Path, clock: TickingDateTimeFactory
) -> None:
    # Its own grid (not the fixture's), to stop it while the membership is loaded.
    async with serve_grid(tmp_path) as own:
        entry = (await join_grid(own, "Offline")).entry(own)
        await setup_member(hass, entry)
    energy_sensor(hass, "sensor.heat_pump", 12.0)
    result = await add_asset(
        hass, entry.entry_id, SUBENTRY_METER, meter("Heat pump", "sensor.heat_pump")
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}
    assert entry.subentries == {}  # nothing saved that the grid does not know
    assert entry.state is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_asset_flow_needs_a_loaded_membership(
    hass: HomeAssistant, grid: RunningGrid, join: Callable[..., Awaitable[Member]]
) -> None:
    entry = (await join()).entry(grid, url=UNREACHABLE_URL)
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_METER), context={"source": SOURCE_USER}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "entry_not_loaded"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_change_a_source(
    hass: HomeAssistant, grid: RunningGrid, join: Callable[..., Awaitable[Member]]
) -> None:
    member = await join("Upgrader")
    entry = member.entry(grid)
    await setup_member(hass, entry)
    energy_sensor(hass, "sensor.pv_old", 5.0)
    energy_sensor(hass, "sensor.pv_new", 0.0)
    await add_asset(hass, entry.entry_id, SUBENTRY_SOURCE, source("Roof PV", "sensor.pv_old", 4000))
    ((subentry_id, subentry),) = entry.subentries.items()
    asset_id = subentry.data[CONF_ASSET_ID]

    result = await start_subentry_reconfigure(hass, entry, subentry_id)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reconfigure"
    # The form shows the source as it is.
    assert suggested(result) == {
        CONF_NAME: "Roof PV",
        CONF_KIND: "solar",
        CONF_ENERGY_ENTITY: "sensor.pv_old",
        CONF_RATED_POWER: 4000,
    }
    # A bad name keeps the form, with what was typed.
    changed = {
        CONF_NAME: "Roof PV (new inverter)",
        CONF_KIND: "solar",
        CONF_ENERGY_ENTITY: "sensor.pv_new",
        CONF_RATED_POWER: 9500.0,
    }
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {**changed, CONF_NAME: ""}
    )
    assert result["errors"] == {CONF_NAME: "invalid_name"}
    assert suggested(result)[CONF_ENERGY_ENTITY] == "sensor.pv_new"
    result = await hass.config_entries.subentries.async_configure(result["flow_id"], changed)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()  # a new sensor: the membership reloads

    # The same asset (same id) with its new name and power, at the grid and here.
    me = await grid.client(member.keys).me()
    assert [(s.id, s.name, s.rated_power_w) for s in me.assets.sources] == [
        (asset_id, "Roof PV (new inverter)", 9500)
    ]
    subentry = entry.subentries[subentry_id]
    assert subentry.title == "Roof PV (new inverter)"
    assert subentry.data[CONF_RATED_POWER] == 9500
    assert entry.state is ConfigEntryState.LOADED
    assert entry.runtime_data.coordinator.meters == {asset_id: "sensor.pv_new"}
    assert await hass.config_entries.async_unload(entry.entry_id)

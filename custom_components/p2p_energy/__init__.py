"""P2P Energy: trade your household's energy with your neighbours."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import (
    ConfigEntryAuthFailed,
    ConfigEntryError,
    ConfigEntryNotReady,
)
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.typing import ConfigType
from homeassistant.util import dt as dt_util

from .assets import asset_of, declarations, meter_entities, subentry_items
from .client.grid_client import GridClient, GridUnavailable
from .client.household import Household, TradingOptions
from .client.ledger.base import LedgerError
from .client.models import GridInfo, Participant
from .client.payments import IotaPayer, LocalPayer, SaveState, make_payer
from .client.protocol import ErrorCode, ProtocolError
from .client.strategy import StrategyKind
from .const import (
    CONF_AUTO_PAY,
    CONF_DAILY_CAP,
    CONF_FORECAST_ENTITY,
    CONF_GRID_URL,
    CONF_MAX_BUY_PRICE,
    CONF_MIN_SELL_PRICE,
    CONF_STRATEGY,
    CONF_TRADE_AHEAD,
    CONF_TRADING,
    DEFAULT_TRADE_AHEAD,
    DOMAIN,
    LOGGER,
)
from .coordinator import P2PCoordinator, async_delete_issues, create_store
from .data import P2PConfigEntry, P2PData
from .entity import async_link_devices
from .membership import client_from_entry
from .prices import default_daily_cap, plain_decimal
from .services import async_setup_services

PLATFORMS: list[Platform] = [
    Platform.BINARY_SENSOR,
    Platform.EVENT,
    Platform.NUMBER,
    Platform.SENSOR,
    Platform.SWITCH,
]
CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)
_AUTH_LOST = frozenset({ErrorCode.NOT_MEMBER, ErrorCode.SUSPENDED})
# Refusals that pass by themselves: set-up is retried.
_PASSING = frozenset(
    {ErrorCode.RATE_LIMITED, ErrorCode.UNAVAILABLE, ErrorCode.STALE_TIMESTAMP, ErrorCode.REPLAY}
)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the actions once for all memberships."""
    async_setup_services(hass)
    return True


def price_text(value: float | str | Decimal) -> str:
    """An option price (a number in the UI) as the protocol's decimal string."""
    return format(plain_decimal(Decimal(str(value))), "f")


def trading_options(options: Mapping[str, Any], feed_in: str, retail: str) -> TradingOptions:
    return TradingOptions(
        enabled=bool(options.get(CONF_TRADING, True)),
        strategy=StrategyKind(options.get(CONF_STRATEGY, StrategyKind.RESERVE)),
        min_sell_price=price_text(options.get(CONF_MIN_SELL_PRICE, feed_in)),
        max_buy_price=price_text(options.get(CONF_MAX_BUY_PRICE, retail)),
        trade_ahead=int(options.get(CONF_TRADE_AHEAD, DEFAULT_TRADE_AHEAD)),
        daily_cap_micro=int(
            Decimal(str(options.get(CONF_DAILY_CAP, default_daily_cap(retail)))) * 1_000_000
        ),
        auto_pay=bool(options.get(CONF_AUTO_PAY, True)),
    )


async def async_setup_entry(hass: HomeAssistant, entry: P2PConfigEntry) -> bool:
    """Connect the membership: grid, stored household state, assets, coordinator."""
    store = create_store(hass, entry.entry_id)
    state = await store.async_load()
    client = client_from_entry(hass, entry.data, Household.stored_last_seq(state))
    grid, me = await _connect(entry, client)
    holder: dict[str, P2PCoordinator] = {}

    async def save_payer(_state: dict[str, Any]) -> None:
        # The IOTA payer keeps its signed transaction on disk before sending.
        if "coordinator" in holder:
            await holder["coordinator"].async_save()

    household = Household(
        client,
        grid,
        zone=me.zone,
        assets=[asset_of(sub) for sub in entry.subentries.values()],
        options=trading_options(entry.options, grid.prices.feed_in, grid.prices.retail),
        state=state,
        payer=_payer(hass, client, grid, (state or {}).get("payer"), save_payer),
    )
    household.note_contact(dt_util.utcnow())
    coordinator = P2PCoordinator(
        hass,
        entry,
        client,
        household,
        store,
        meters=meter_entities(entry.subentries),
        forecast_entity=entry.options.get(CONF_FORECAST_ENTITY),
    )
    holder["coordinator"] = coordinator
    entry.runtime_data = P2PData(client, grid, household, coordinator)
    await coordinator.async_config_entry_first_refresh()
    async_link_devices(hass, coordinator)
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    await coordinator.async_start()
    entry.async_on_unload(entry.add_update_listener(_async_update_listener))
    return True


async def _connect(entry: P2PConfigEntry, client: GridClient) -> tuple[GridInfo, Participant]:
    """The grid and this membership as the grid sees it, with the assets declared as set up.

    An unreachable grid is retried by Home Assistant; a refusal is mapped by
    :func:`_setup_refused`.
    """
    try:
        grid = await client.grid_info()
        me = await client.me()
        sources, meters = declarations(subentry_items(entry.subentries))
        declared = (
            tuple(sorted(me.assets.sources, key=lambda d: d.id)),
            tuple(sorted(me.assets.meters, key=lambda d: d.id)),
        )
        if declared != (sources, meters):
            await client.set_assets(sources, meters)
    except GridUnavailable as exc:
        # The details (a connector error, a status) are for the log, not the owner.
        LOGGER.debug("Grid at %s unreachable at set-up: %s", entry.data[CONF_GRID_URL], exc)
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN,
            translation_key="setup_failed",
            translation_placeholders={"grid_url": entry.data[CONF_GRID_URL]},
        ) from exc
    except ProtocolError as exc:
        raise _setup_refused(entry, exc) from exc
    return grid, me


def _payer(
    hass: HomeAssistant,
    client: GridClient,
    grid: GridInfo,
    state: Mapping[str, Any] | None,
    save: SaveState,
) -> LocalPayer | IotaPayer | None:
    """What pays this household's statements, or None when its ledger cannot be used here."""
    try:
        return make_payer(
            client, grid, state=state, save=save, session=async_get_clientsession(hass)
        )
    except LedgerError as exc:
        LOGGER.warning(
            "Statements cannot be paid from here: %s; pay them from a wallet of your own", exc
        )
        return None


def _setup_refused(entry: P2PConfigEntry, exc: ProtocolError) -> Exception:
    """What set-up raises when the grid answers with a refusal.

    Only a refusal that can pass by itself (rate limit, a grid busy or with a
    clock apart from ours) is retried; one that stays until someone acts (the
    key, another grid at the address, anything else the grid refuses for
    good) stops with what to do, instead of retrying forever as if the grid
    were unreachable.
    """
    if exc.code in _AUTH_LOST:
        return ConfigEntryAuthFailed(translation_domain=DOMAIN, translation_key="key_rejected")
    placeholders = {
        "grid_url": entry.data[CONF_GRID_URL],
        "message": exc.message,
        "code": str(exc.code),
    }
    if exc.code in _PASSING:
        return ConfigEntryNotReady(
            translation_domain=DOMAIN,
            translation_key="setup_grid_busy",
            translation_placeholders=placeholders,
        )
    if exc.code is ErrorCode.WRONG_GRID:
        return ConfigEntryError(
            translation_domain=DOMAIN,
            translation_key="setup_wrong_grid",
            translation_placeholders=placeholders,
        )
    return ConfigEntryError(
        translation_domain=DOMAIN,
        translation_key="setup_refused",
        translation_placeholders=placeholders,
    )


async def _async_update_listener(hass: HomeAssistant, entry: P2PConfigEntry) -> None:
    """Options apply at once; a change of assets reloads the membership."""
    data = entry.runtime_data
    if meter_entities(entry.subentries) != data.coordinator.meters or {
        asset_of(sub) for sub in entry.subentries.values()
    } != set(data.household.assets.values()):
        hass.config_entries.async_schedule_reload(entry.entry_id)
        return
    data.household.options = trading_options(
        entry.options, data.grid.prices.feed_in, data.grid.prices.retail
    )
    data.coordinator.forecast_entity = entry.options.get(CONF_FORECAST_ENTITY)
    data.coordinator.async_update_listeners()


async def async_unload_entry(hass: HomeAssistant, entry: P2PConfigEntry) -> bool:
    unloaded = await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
    if unloaded:
        await entry.runtime_data.coordinator.async_save()
    return unloaded


async def async_remove_entry(hass: HomeAssistant, entry: P2PConfigEntry) -> None:
    """Forget the household's stored state and its repair issues with the membership."""
    await create_store(hass, entry.entry_id).async_remove()
    async_delete_issues(hass, entry.entry_id)

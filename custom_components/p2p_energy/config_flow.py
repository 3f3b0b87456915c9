"""Config flow: join a grid with an invitation; subentries for sources and meters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import voluptuous as vol
from homeassistant.components.sensor import SensorDeviceClass, SensorStateClass
from homeassistant.config_entries import (
    SOURCE_RECONFIGURE,
    ConfigEntry,
    ConfigEntryState,
    ConfigFlow,
    ConfigFlowResult,
    ConfigSubentryFlow,
    OptionsFlow,
    SubentryFlowResult,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.data_entry_flow import AbortFlow
from homeassistant.helpers import selector

from .assets import declarations, new_asset_id
from .client.crypto import CryptoError, KeyPair
from .client.grid_client import GridClient, GridUnavailable
from .client.invitation import InvitationError, check_grid_url, parse_invitation
from .client.ledger.iota.keys import keypair_from_secret
from .client.metering import ENERGY_UNITS_TO_WH
from .client.protocol import ErrorCode, ProtocolError, SourceKind, check_name
from .client.strategy import StrategyKind
from .const import (
    CONF_ADDRESS,
    CONF_ASSET_ID,
    CONF_AUTO_PAY,
    CONF_DAILY_CAP,
    CONF_ENERGY_ENTITY,
    CONF_FORECAST_ENTITY,
    CONF_GRID_ID,
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
    DEFAULT_TRADE_AHEAD,
    DOMAIN,
    KEY_GENERATE,
    KEY_IMPORT,
    LOGGER,
    SUBENTRY_METER,
    SUBENTRY_SOURCE,
)
from .membership import create_client, keys_from_entry
from .prices import daily_cap_selector, default_daily_cap, price_limit_selector

_INVITATION_ERRORS = {
    ErrorCode.INVITATION_UNKNOWN: "invalid_invitation",
    ErrorCode.INVITATION_USED: "invitation_used",
    ErrorCode.INVITATION_EXPIRED: "invitation_expired",
    ErrorCode.INVITATION_REVOKED: "invitation_revoked",
}

USER_SCHEMA = vol.Schema(
    {
        vol.Required(CONF_INVITATION): str,
        vol.Optional(CONF_GRID_URL): selector.TextSelector(
            selector.TextSelectorConfig(type=selector.TextSelectorType.URL)
        ),
        vol.Required(CONF_NAME): str,
        vol.Required(CONF_KEY_SOURCE, default=KEY_GENERATE): selector.SelectSelector(
            selector.SelectSelectorConfig(
                options=[KEY_GENERATE, KEY_IMPORT], translation_key=CONF_KEY_SOURCE
            )
        ),
    }
)
# Examples shown in the forms: hassfest refuses URLs inside strings.json.
USER_PLACEHOLDERS = {
    "example_link": "https://grid.example.org/join#ABCD-EFGH-…",
    "example_url": "https://grid.example.org",
}


def grid_and_code(user_input: Mapping[str, Any]) -> tuple[str, str] | dict[str, str]:
    """The grid's URL and the invitation code from the form, or the form's errors.

    The invitation link carries both; a bare code needs the URL field.
    """
    typed_url = str(user_input.get(CONF_GRID_URL) or "").strip()
    try:
        invitation = parse_invitation(user_input[CONF_INVITATION])
    except InvitationError:
        return {CONF_INVITATION: "invalid_invitation_format"}
    try:
        url = check_grid_url(typed_url) if typed_url else None
    except InvitationError:
        return {CONF_GRID_URL: "invalid_url"}
    if invitation.grid_url is None:
        return (url, invitation.code) if url else {CONF_GRID_URL: "url_required"}
    if url is not None and url != invitation.grid_url:
        return {CONF_GRID_URL: "url_mismatch"}
    return invitation.grid_url, invitation.code


def unexpected(where: str) -> str:
    """Log an unexpected failure with its traceback; the form shows ``unknown``."""
    LOGGER.exception("Unexpected error while %s", where)
    return "unknown"


def unique_id_for(grid_id: str, address: str) -> str:
    """One entry per grid membership: a key may be a member of several grids."""
    return f"{grid_id}_{address}"


class P2PConfigFlow(ConfigFlow, domain=DOMAIN):
    """Join a grid: URL and invitation, a key, registration."""

    VERSION = 1

    def __init__(self) -> None:
        self._user_input: dict[str, Any] = {}
        self._grid_url = ""
        self._code = ""

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> P2POptionsFlow:
        return P2POptionsFlow()

    @classmethod
    @callback
    def async_get_supported_subentry_types(
        cls, config_entry: ConfigEntry
    ) -> dict[str, type[ConfigSubentryFlow]]:
        return {SUBENTRY_SOURCE: SourceSubentryFlow, SUBENTRY_METER: MeterSubentryFlow}

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        errors: dict[str, str] = {}
        if user_input is not None:
            try:
                check_name(user_input[CONF_NAME].strip(), CONF_NAME)
            except ProtocolError:
                errors[CONF_NAME] = "invalid_name"
            found = grid_and_code(user_input)
            if isinstance(found, dict):
                errors.update(found)
            if not errors:
                assert isinstance(found, tuple)
                self._grid_url, self._code = found
                self._user_input = {**user_input, CONF_NAME: user_input[CONF_NAME].strip()}
                if user_input[CONF_KEY_SOURCE] == KEY_IMPORT:
                    return await self.async_step_import_key()
                return await self._async_join(KeyPair.generate())
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(USER_SCHEMA, user_input),
            errors=errors,
            description_placeholders=USER_PLACEHOLDERS,
        )

    async def async_step_import_key(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        errors: dict[str, str] = {}
        if user_input is not None:
            try:
                # A 64-hex seed or an IOTA wallet's iotaprivkey1… export.
                keys = keypair_from_secret(user_input[CONF_SECRET_KEY])
            except CryptoError:
                errors[CONF_SECRET_KEY] = "invalid_key"
            else:
                return await self._async_join(keys)
        return self.async_show_form(
            step_id="import_key",
            data_schema=vol.Schema(
                {
                    vol.Required(CONF_SECRET_KEY): selector.TextSelector(
                        selector.TextSelectorConfig(type=selector.TextSelectorType.PASSWORD)
                    )
                }
            ),
            errors=errors,
        )

    async def _async_join(self, keys: KeyPair) -> ConfigFlowResult:
        url = self._grid_url
        client = create_client(self.hass, url, keys)
        errors: dict[str, str] = {}
        placeholders: dict[str, str] = dict(USER_PLACEHOLDERS)
        try:
            grid = await client.grid_info()
            await self.async_set_unique_id(unique_id_for(grid.grid, keys.address))
            self._abort_if_unique_id_configured()
            participant = await client.join(self._code, self._user_input[CONF_NAME])
        except GridUnavailable:
            errors["base"] = "cannot_connect"
        except ProtocolError as exc:
            if exc.code is ErrorCode.ALREADY_REGISTERED:
                return self.async_abort(reason="already_registered")
            if exc.code in _INVITATION_ERRORS:
                errors[CONF_INVITATION] = _INVITATION_ERRORS[exc.code]
            else:
                errors["base"] = "grid_refused"
                placeholders["reason"] = exc.message
        except AbortFlow:
            raise
        except Exception:  # not a grid's answer: the form says so, the log says why
            errors["base"] = unexpected(f"joining the grid at {url}")
        else:
            return self.async_create_entry(
                title=f"{grid.name}: {participant.name}",
                data={
                    CONF_GRID_URL: url,
                    CONF_GRID_ID: grid.grid,
                    CONF_ADDRESS: keys.address,
                    CONF_NAME: participant.name,
                    CONF_SECRET_KEY: keys.seed_hex,
                },
                options={
                    CONF_TRADING: True,
                    CONF_STRATEGY: StrategyKind.RESERVE.value,
                    CONF_MIN_SELL_PRICE: float(grid.prices.feed_in),
                    CONF_MAX_BUY_PRICE: float(grid.prices.retail),
                    CONF_DAILY_CAP: default_daily_cap(grid.prices.retail),
                    CONF_TRADE_AHEAD: DEFAULT_TRADE_AHEAD,
                    CONF_AUTO_PAY: True,
                },
                # What comes next: without sources and meters nothing is traded.
                description="joined",
                description_placeholders={
                    "grid": grid.name,
                    "address": keys.address,
                    "currency": grid.currency,
                },
            )
        # Errors about the grid or the invitation belong on the first form,
        # also when the key was imported.
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(USER_SCHEMA, self._user_input),
            errors=errors,
            description_placeholders=placeholders,
        )

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        entry = self._get_reauth_entry()
        errors: dict[str, str] = {}
        placeholders = {"grid_url": entry.data[CONF_GRID_URL], "address": entry.data[CONF_ADDRESS]}
        if user_input is not None:
            client = create_client(
                self.hass,
                entry.data[CONF_GRID_URL],
                keys_from_entry(entry.data),
                grid_id=entry.data[CONF_GRID_ID],
            )
            try:
                # The link or the bare code: the membership keeps its address.
                code = parse_invitation(user_input[CONF_INVITATION]).code
                await client.join(code, entry.data[CONF_NAME])
            except InvitationError:
                errors[CONF_INVITATION] = "invalid_invitation_format"
            except GridUnavailable:
                errors["base"] = "cannot_connect"
            except ProtocolError as exc:
                if exc.code in _INVITATION_ERRORS:
                    errors[CONF_INVITATION] = _INVITATION_ERRORS[exc.code]
                else:
                    errors["base"] = "grid_refused"
                    placeholders["reason"] = exc.message
            except Exception:  # not a grid's answer: the form says so, the log says why
                errors["base"] = unexpected("re-registering the household's key")
            else:
                return self._async_reload_and_abort(entry, "reauth_successful")
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=vol.Schema({vol.Required(CONF_INVITATION): str}),
            errors=errors,
            description_placeholders=placeholders,
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        placeholders = {"reason": ""}
        if user_input is not None:
            url = user_input[CONF_GRID_URL].rstrip("/")
            client = create_client(self.hass, url, keys_from_entry(entry.data))
            try:
                grid = await client.grid_info()
                if grid.grid != entry.data[CONF_GRID_ID]:
                    errors["base"] = "wrong_grid"
                else:
                    await client.me()
            except GridUnavailable:
                errors["base"] = "cannot_connect"
            except ProtocolError as exc:
                errors["base"] = "key_refused"
                placeholders["reason"] = exc.message
            except Exception:  # not a grid's answer: the form says so, the log says why
                errors["base"] = unexpected(f"checking the grid at {url}")
            if not errors:
                self.hass.config_entries.async_update_entry(
                    entry, data={**entry.data, CONF_GRID_URL: url}
                )
                return self._async_reload_and_abort(entry, "reconfigure_successful")
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                vol.Schema({vol.Required(CONF_GRID_URL): str}),
                user_input or {CONF_GRID_URL: entry.data[CONF_GRID_URL]},
            ),
            errors=errors,
            description_placeholders=placeholders,
        )

    @callback
    def _async_reload_and_abort(self, entry: ConfigEntry, reason: str) -> ConfigFlowResult:
        """Reload the membership once, then finish the flow.

        Not async_update_reload_and_abort: Home Assistant deprecates it (2026.6,
        an error from 2026.12) for an entry with an update listener, since the
        two may both reload. Ours never does here: it reloads only when the
        assets change and applies options in place, so this flow, which
        changes neither, owns the one reload. That also covers an entry that
        is not loaded (a wrong address is why one reconfigures), which has no
        listener, and a reauth, which changes nothing a listener would see.
        """
        self.hass.config_entries.async_schedule_reload(entry.entry_id)
        return self.async_abort(reason=reason)


class P2POptionsFlow(OptionsFlow):
    """Trading and payment options."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        errors: dict[str, str] = {}
        if user_input is not None:
            if user_input[CONF_MAX_BUY_PRICE] < user_input[CONF_MIN_SELL_PRICE]:
                errors[CONF_MAX_BUY_PRICE] = "price_order"
            forecast = user_input.get(CONF_FORECAST_ENTITY)
            if forecast and (problem := forecast_sensor_error(self.hass, forecast)):
                errors[CONF_FORECAST_ENTITY] = problem
            if not errors:
                return self.async_create_entry(data=user_input)
        currency = self._currency()
        schema = vol.Schema(
            {
                vol.Required(CONF_TRADING): bool,
                vol.Required(CONF_STRATEGY): selector.SelectSelector(
                    selector.SelectSelectorConfig(
                        options=[k.value for k in StrategyKind], translation_key=CONF_STRATEGY
                    )
                ),
                vol.Required(CONF_MIN_SELL_PRICE): price_limit_selector(currency),
                vol.Required(CONF_MAX_BUY_PRICE): price_limit_selector(currency),
                vol.Required(CONF_DAILY_CAP): daily_cap_selector(currency),
                vol.Optional(CONF_FORECAST_ENTITY): selector.EntitySelector(
                    selector.EntitySelectorConfig(
                        domain="sensor", device_class=SensorDeviceClass.ENERGY
                    )
                ),
                vol.Required(CONF_TRADE_AHEAD): selector.NumberSelector(
                    selector.NumberSelectorConfig(
                        min=1, max=96, step=1, mode=selector.NumberSelectorMode.BOX
                    )
                ),
                vol.Required(CONF_AUTO_PAY): bool,
            }
        )
        return self.async_show_form(
            step_id="init",
            data_schema=self.add_suggested_values_to_schema(
                schema, user_input or dict(self.config_entry.options)
            ),
            errors=errors,
        )

    def _currency(self) -> str | None:
        """The grid's currency while the membership is loaded (the unit of the limits)."""
        if self.config_entry.state is not ConfigEntryState.LOADED:
            return None
        return str(self.config_entry.runtime_data.grid.currency)


def forecast_sensor_error(hass: HomeAssistant, entity_id: str) -> str | None:
    """Why ``entity_id`` cannot be a forecast of the next hour's energy, or None.

    A forecast is an amount expected, not a meter: a cumulative sensor
    (``total``/``total_increasing``) would be read as thousands of kWh
    coming within the hour.
    """
    state = hass.states.get(entity_id)
    if state is None or state.attributes.get("unit_of_measurement") not in ENERGY_UNITS_TO_WH:
        return "not_forecast_sensor"
    if state.attributes.get("state_class") in (
        SensorStateClass.TOTAL,
        SensorStateClass.TOTAL_INCREASING,
    ):
        return "cumulative_forecast"
    return None


def energy_sensor_error(hass: HomeAssistant, entity_id: str) -> str | None:
    """Why ``entity_id`` cannot be used as a cumulative energy meter, or None."""
    state = hass.states.get(entity_id)
    if state is None:
        return "not_energy_sensor"
    unit = state.attributes.get("unit_of_measurement")
    state_class = state.attributes.get("state_class")
    if unit not in ENERGY_UNITS_TO_WH or state_class not in (
        SensorStateClass.TOTAL,
        SensorStateClass.TOTAL_INCREASING,
    ):
        return "not_energy_sensor"
    return None


class _AssetSubentryFlow(ConfigSubentryFlow):
    """Shared steps of the source and meter subentry flows."""

    subentry_type: str

    def _schema(self) -> vol.Schema:
        raise NotImplementedError

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        return await self._async_step(user_input, "user")

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        return await self._async_step(user_input, "reconfigure")

    async def _async_step(
        self, user_input: dict[str, Any] | None, step_id: str
    ) -> SubentryFlowResult:
        entry = self._get_entry()
        if entry.state is not ConfigEntryState.LOADED:
            return self.async_abort(reason="entry_not_loaded")
        errors: dict[str, str] = {}
        placeholders: dict[str, str] = {}
        if user_input is not None:
            name = str(user_input[CONF_NAME]).strip()
            try:
                check_name(name, CONF_NAME)
            except ProtocolError:
                errors[CONF_NAME] = "invalid_name"
            if sensor_error := energy_sensor_error(self.hass, user_input[CONF_ENERGY_ENTITY]):
                errors[CONF_ENERGY_ENTITY] = sensor_error
            if not errors:
                data = {k: v for k, v in user_input.items() if k != CONF_NAME}
                data[CONF_ASSET_ID] = (
                    self._get_reconfigure_subentry().data[CONF_ASSET_ID]
                    if self.source == SOURCE_RECONFIGURE
                    else new_asset_id()
                )
                if CONF_RATED_POWER in data and data[CONF_RATED_POWER] is not None:
                    data[CONF_RATED_POWER] = int(data[CONF_RATED_POWER])
                refusal = await self._register(entry, name, data)
                if refusal is None:
                    if self.source == SOURCE_RECONFIGURE:
                        return self.async_update_and_abort(
                            entry, self._get_reconfigure_subentry(), title=name, data=data
                        )
                    return self.async_create_entry(title=name, data=data)
                errors["base"], placeholders["reason"] = refusal
        suggested: Mapping[str, Any] | None = user_input
        if suggested is None and self.source == SOURCE_RECONFIGURE:
            sub = self._get_reconfigure_subentry()
            suggested = {**sub.data, CONF_NAME: sub.title}
        return self.async_show_form(
            step_id=step_id,
            data_schema=self.add_suggested_values_to_schema(self._schema(), suggested),
            errors=errors,
            description_placeholders=placeholders,
        )

    async def _register(
        self, entry: ConfigEntry, name: str, data: dict[str, Any]
    ) -> tuple[str, str] | None:
        """Tell the grid about the asset set including this change, before saving it."""
        client: GridClient = entry.runtime_data.client
        items: list[tuple[str, str, Mapping[str, Any]]] = [
            (sub.subentry_type, sub.title, sub.data)
            for sub in entry.subentries.values()
            if sub.data[CONF_ASSET_ID] != data[CONF_ASSET_ID]
        ]
        items.append((self.subentry_type, name, data))
        sources, meters = declarations(items)
        try:
            await client.set_assets(sources, meters)
        except GridUnavailable:
            return "cannot_connect", ""
        except ProtocolError as exc:
            return "grid_refused", exc.message
        except Exception:  # not a grid's answer: the form says so, the log says why
            return unexpected("declaring the household's assets"), ""
        return None


class SourceSubentryFlow(_AssetSubentryFlow):
    subentry_type = SUBENTRY_SOURCE

    def _schema(self) -> vol.Schema:
        return vol.Schema(
            {
                vol.Required(CONF_NAME): str,
                vol.Required(CONF_KIND, default=SourceKind.SOLAR.value): selector.SelectSelector(
                    selector.SelectSelectorConfig(
                        options=[k.value for k in SourceKind], translation_key=CONF_KIND
                    )
                ),
                vol.Required(CONF_ENERGY_ENTITY): _energy_selector(),
                vol.Required(CONF_RATED_POWER): selector.NumberSelector(
                    selector.NumberSelectorConfig(
                        min=1,
                        max=1_000_000,
                        step=1,
                        unit_of_measurement="W",
                        mode=selector.NumberSelectorMode.BOX,
                    )
                ),
            }
        )


class MeterSubentryFlow(_AssetSubentryFlow):
    subentry_type = SUBENTRY_METER

    def _schema(self) -> vol.Schema:
        return vol.Schema(
            {
                vol.Required(CONF_NAME): str,
                vol.Required(CONF_ENERGY_ENTITY): _energy_selector(),
                vol.Optional(CONF_RATED_POWER): selector.NumberSelector(
                    selector.NumberSelectorConfig(
                        min=1,
                        max=1_000_000,
                        step=1,
                        unit_of_measurement="W",
                        mode=selector.NumberSelectorMode.BOX,
                    )
                ),
            }
        )


def _energy_selector() -> selector.EntitySelector:
    return selector.EntitySelector(
        selector.EntitySelectorConfig(domain="sensor", device_class=SensorDeviceClass.ENERGY)
    )

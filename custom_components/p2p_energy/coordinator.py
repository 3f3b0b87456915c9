"""The coordinator: one household's routine inside Home Assistant.

Meter sensors feed the household as their states change; at the start of
every minute (so at every interval boundary, which falls on a whole minute)
the household sends finished readings, places its orders and pays what is
due; the grid's live stream pushes market results, fills and statements, and
the tick fetches them itself only while the stream is silent. That tick is
the only schedule: no separate polling interval.

The entities follow the connection: while the grid cannot be reached the
coordinator holds an ``UpdateFailed`` (entities showing what the grid says go
unavailable; one warning when it goes, one info line when it is back), and the
live stream, restarted with growing waits after any failure, reports the
grid back the moment it accepts the stream again. Everything the household
knows is kept in Home Assistant's storage after every step, so a restart
loses nothing and repeats nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from homeassistant.const import STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, State, callback
from homeassistant.exceptions import ConfigEntryAuthFailed
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.dispatcher import async_dispatcher_send
from homeassistant.helpers.event import (
    async_track_state_change_event,
    async_track_utc_time_change,
)
from homeassistant.helpers.storage import Store
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed
from homeassistant.util import dt as dt_util

from .client.backoff import retry_delay
from .client.grid_client import GridClient, GridUnavailable
from .client.household import Household, HouseholdEvent, Snapshot
from .client.meter_trust import WAITING, ReadingFlag
from .client.metering import MeteringError, parse_state, to_wh
from .client.protocol import ErrorCode, ProtocolError
from .client.units import format_money_micro
from .const import (
    CONF_ADDRESS,
    CONF_GRID_URL,
    CONF_KIND,
    CONF_RATED_POWER,
    DOMAIN,
    EVENT_ASSET_APPROVAL,
    EVENT_FLAG_DECISION,
    EVENT_PAYMENT,
    EVENT_READING_FLAGGED,
    EVENT_SHARED,
    EVENT_STATEMENT,
    EVENT_TRADE,
    FLAG_ISSUE_KIND,
    FLAG_ISSUES,
    ISSUE_ASSET_REFUSED,
    ISSUE_ASSET_WAITING,
    ISSUE_FLAGGED_OTHER,
    ISSUE_KEY_REJECTED,
    ISSUE_OVER_CAP,
    ISSUE_PAYMENT_FAILED,
    ISSUE_REFUSED_OTHER,
    ISSUE_UNREACHABLE,
    LOGGER,
    REFUSAL_ISSUE_KIND,
    REFUSAL_ISSUES,
    STORAGE_VERSION,
    SUBENTRY_SOURCE,
    UNREACHABLE_INTERVALS,
)
from .data import P2PConfigEntry

# The live stream is started again after a failure the client does not
# retry itself (a refusal, a broken message): after 5 s, then 10 s, … 15 min.
STREAM_RETRY_FIRST: Final = 5.0
STREAM_RETRY_LONGEST: Final = 900.0
_AUTH_LOST: Final = frozenset({ErrorCode.NOT_MEMBER, ErrorCode.SUSPENDED})
BUS_EVENTS: Final = {
    "trade": EVENT_TRADE,
    "statement": EVENT_STATEMENT,
    "payment": EVENT_PAYMENT,
    "shared": EVENT_SHARED,
    "asset_approval": EVENT_ASSET_APPROVAL,
    "reading_flagged": EVENT_READING_FLAGGED,
    "flag_decision": EVENT_FLAG_DECISION,
}
# Stream events about the household's meters: their repair issues follow them.
METER_EVENTS: Final = frozenset({"asset_approval", "reading_flagged", "flag_decision"})


def signal_event(entry_id: str) -> str:
    """Dispatcher signal carrying a :class:`HouseholdEvent` to the event entity."""
    return f"{DOMAIN}_{entry_id}_event"


# Stream events after which the household's balance has changed.
WALLET_EVENTS: Final = frozenset({"payment", "statement"})
STREAM_SAVE_DELAY: Final = 2.0


def create_store(hass: HomeAssistant, entry_id: str) -> Store[dict[str, Any]]:
    return Store(hass, STORAGE_VERSION, f"{DOMAIN}.{entry_id}")


class P2PCoordinator(DataUpdateCoordinator[Snapshot]):
    """Drives one membership's household and publishes its snapshot to entities."""

    config_entry: P2PConfigEntry

    def __init__(  # noqa: PLR0917 - mirrors what a loaded membership holds
        self,
        hass: HomeAssistant,
        entry: P2PConfigEntry,
        client: GridClient,
        household: Household,
        store: Store[dict[str, Any]],
        meters: dict[str, str],
        forecast_entity: str | None = None,
    ) -> None:
        super().__init__(
            hass,
            LOGGER,
            config_entry=entry,
            name=DOMAIN,
            # No polling schedule of its own: the minute tick (async_start)
            # fetches what the silent stream did not bring.
            update_interval=None,
            always_update=False,
        )
        self.client = client
        self.household = household
        self._store = store
        self.meters = meters  # asset id → energy sensor entity id
        self.forecast_entity = forecast_entity
        self._last_event_at: datetime | None = None
        self._stream_failures = 0
        self._started_at = dt_util.utcnow()
        self._tick_running = False
        # Work done once per interval (or when something changed), not every tick.
        self._wallet_checked: datetime | None = None
        self._receipts_checked: datetime | None = None
        self._saved: dict[str, Any] | None = None
        self._traded: tuple[datetime, int | None] | None = None
        self._refusals_shown: dict[str, int] | None = None
        self._meter_issues_shown: object = None
        household.on_event = self._on_household_event

    # -- start and stop -----------------------------------------------------------------

    async def async_start(self) -> None:
        """Read the meters, subscribe to them, start the tick and the live stream."""
        entry = self.config_entry
        now = dt_util.utcnow()
        for asset_id, entity_id in self.meters.items():
            self._observe(asset_id, self.hass.states.get(entity_id), now)
        if self.meters:
            entry.async_on_unload(
                async_track_state_change_event(
                    self.hass, list(self.meters.values()), self._on_state_change
                )
            )
        # At second 0 of every minute: right after each interval boundary.
        entry.async_on_unload(
            async_track_utc_time_change(self.hass, self._scheduled_tick, second=0)
        )
        entry.async_create_background_task(
            self.hass, self._run_stream(), f"{DOMAIN} live stream {entry.title}"
        )

    def _state(self) -> dict[str, Any]:
        state = self.household.to_state()
        payer_state = getattr(self.household.payer, "to_state", None)
        if payer_state is not None:
            state["payer"] = payer_state()
        return state

    async def async_save(self, *, if_changed: bool = False) -> None:
        """Write the household's state now (unchanged state: only when not ``if_changed``)."""
        state = self._state()
        if if_changed and state == self._saved:
            return
        await self._store.async_save(state)
        self._saved = state

    @callback
    def async_publish(self) -> None:
        """Show the household's state; while the grid is away, as an update failure.

        Entities are written only when something they show changed. The
        failure is logged once when the connection goes (by the coordinator,
        as a warning) and once when it returns.
        """
        household = self.household
        snapshot = household.snapshot(dt_util.utcnow())
        if household.connected and household.key_rejected is None:
            if not self.last_update_success:
                LOGGER.info("The grid at %s is reachable again", self._grid_url)
            if snapshot != self.data or not self.last_update_success:
                self.async_set_updated_data(snapshot)
            return
        changed = snapshot != self.data
        self.data = snapshot  # what entities available offline show
        if household.key_rejected is not None:
            error = UpdateFailed(translation_domain=DOMAIN, translation_key="key_rejected")
            gone = "The grid at %s no longer accepts this household's key"
        else:
            error = UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="grid_unreachable",
                translation_placeholders={"grid_url": self._grid_url},
            )
            gone = "Cannot reach the grid at %s"
        if self.last_update_success:
            LOGGER.warning(gone + "; its data is unavailable until it is back", self._grid_url)
            self.last_update_success = False
            self.last_exception = error
            self.async_update_listeners()
        elif changed:
            self.async_update_listeners()

    @property
    def _grid_url(self) -> str:
        return str(self.config_entry.data[CONF_GRID_URL])

    # -- meters -----------------------------------------------------------------------------

    @callback
    def _on_state_change(self, event: Event[EventStateChangedData]) -> None:
        entity_id = event.data["entity_id"]
        for asset_id, meter_entity in self.meters.items():
            if meter_entity == entity_id:
                self._observe(asset_id, event.data["new_state"], dt_util.utcnow())

    def _observe(self, asset_id: str, state: State | None, now: datetime) -> None:
        if state is None or state.state in (STATE_UNAVAILABLE, STATE_UNKNOWN):
            self.household.mark_unavailable(asset_id)
            return
        value = parse_state(state.state)
        if value is None:
            self.household.mark_unavailable(asset_id)
            return
        try:
            total_wh = to_wh(value, state.attributes.get("unit_of_measurement"))
        except MeteringError as exc:
            LOGGER.warning("%s: %s", state.entity_id, exc)
            self.household.mark_unavailable(asset_id)
            return
        # The time the meter's value last changed, not when we looked at it:
        # after a restart the restored state is old, and its energy is too.
        self.household.observe(asset_id, total_wh, min(state.last_updated, now))

    def _solar_forecast_wh(self) -> int | None:
        if not self.forecast_entity:
            return None
        state = self.hass.states.get(self.forecast_entity)
        value = parse_state(state.state) if state else None
        if state is None or value is None:
            return None
        try:
            per_hour_wh = to_wh(value, state.attributes.get("unit_of_measurement"))
        except MeteringError:
            return None
        return round(per_hour_wh * self.household.grid.interval_minutes / 60)

    # -- the routine ----------------------------------------------------------------------------

    @callback
    def _scheduled_tick(self, _now: datetime) -> None:
        # A tracked entry task (not a background job): unloading waits for it,
        # so a tick never talks to the grid while the membership goes away.
        self.config_entry.async_create_task(self.hass, self.async_tick(), "p2p_energy tick")

    async def async_tick(self) -> None:
        """Send readings, trade, pay; then save and publish. Never runs twice at once.

        Runs every minute, but most minutes nothing is due: the work (and the
        state written, the entities updated) happens only when something
        changed, so an idle minute costs next to nothing.
        """
        if self._tick_running:
            return
        self._tick_running = True
        try:
            now = dt_util.utcnow()
            household = self.household
            was_connected = household.connected
            changed = False
            if household.collect(now):
                await self.async_save()  # finished readings are safe before we try to send
                self._traded = None  # the forecast learned from them
                changed = True
            asked = household.snapshot(now).readings_pending > 0  # report() calls the grid
            changed |= await household.report(now) > 0
            self.update_refusal_issues()
            self.update_meter_issues()
            # While the grid is unreachable one failed call per tick is
            # enough; the rest would only wait for the same timeouts.
            if household.connected or household.last_contact is None:
                asked = True
                changed |= await self._trade(now)
            # Fetch what a silent stream did not bring; while disconnected
            # with nothing else to send, this is the call that finds the grid back.
            if not self._stream_alive(now) and (household.connected or not asked):
                await household.refresh(now)
                changed = True
            if household.connected:
                changed |= await self._settle_up(now)
            changed |= household.connected != was_connected
            if changed:
                await self.async_save(if_changed=True)
            if changed or not household.connected:
                self._update_issues(now)
            self.async_publish()
        finally:
            self._tick_running = False

    async def _trade(self, now: datetime) -> bool:
        """Re-plan when the open intervals or the forecast moved, or the last try failed."""
        forecast = self._solar_forecast_wh()
        key = (self.household.next_open_interval(now), forecast)
        if key == self._traded:
            return False
        changed = await self.household.trade(now, forecast) > 0
        self._traded = key if self.household.connected else None
        return changed

    async def _settle_up(self, now: datetime) -> bool:
        """Pay what is due; read the wallet and fetch receipts when they can have changed."""
        household = self.household
        problems = (dict(household.failed_payments), set(household.over_cap))
        paid = await household.pay_due(dt_util.now().date(), now)
        interval = household.current_interval(now)
        changed = bool(paid) or problems != (household.failed_payments, set(household.over_cap))
        # The balance moves with payments and payouts, both announced on the
        # stream; otherwise once an interval is enough.
        if paid or self._wallet_checked != interval:
            before = household.wallet
            await household.refresh_wallet()
            self._wallet_checked = interval
            changed |= household.wallet != before
            wallet = household.wallet
            if before is not None and wallet is not None and wallet.value > before.value:
                household.retry_payments_now()  # money arrived: no need to wait
        # Receipts come when an interval's root closes: once an interval.
        if household.receipts.pending and self._receipts_checked != interval:
            await household.check_receipts()
            self._receipts_checked = interval
            changed = True
        return changed

    async def _async_update_data(self) -> Snapshot:
        """The first refresh at set-up (no schedule: see ``__init__``)."""
        now = dt_util.utcnow()
        if self.household.key_rejected is not None:
            raise ConfigEntryAuthFailed(translation_domain=DOMAIN, translation_key="key_rejected")
        # The wallet is shown from the start, not only after the first tick.
        await self.household.refresh_wallet()
        self._wallet_checked = self.household.current_interval(now)
        if not self.household.connected:
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="grid_unreachable",
                translation_placeholders={"grid_url": self._grid_url},
            )
        return self.household.snapshot(now)

    def _stream_alive(self, now: datetime) -> bool:
        # The grid publishes a market result every interval, so a healthy stream
        # is never silent for two intervals.
        silence = 2 * self.household.interval
        return self._last_event_at is not None and now - self._last_event_at < silence

    async def _run_stream(self) -> None:
        """Feed the live stream to the household; start it again after any failure."""
        while True:
            try:
                await self._follow_stream()
            except ProtocolError as exc:
                if exc.code in _AUTH_LOST:
                    # Nothing to retry until the owner re-authenticates; the
                    # reload after reauthentication starts a new stream.
                    LOGGER.warning("Live stream from the grid stopped: %s", exc.message)
                    self.household.key_rejected = exc
                    self._update_issues(dt_util.utcnow())
                    self.async_publish()
                    return
                LOGGER.debug("Live stream refused: %s (%s)", exc.message, exc.code)
            except GridUnavailable as exc:
                LOGGER.debug("Live stream refused: %s", exc)
            except Exception:  # the stream must outlive any failure
                LOGGER.exception("Live stream from the grid failed")
            self._last_event_at = None  # the tick fetches meanwhile
            self._stream_failures += 1
            await asyncio.sleep(
                retry_delay(
                    self._stream_failures, first=STREAM_RETRY_FIRST, longest=STREAM_RETRY_LONGEST
                )
            )

    async def _follow_stream(self) -> None:
        async for event in self.client.events(
            since=self.household.last_event_id,
            on_connected=self._on_stream_connected,
            on_unreachable=self._on_stream_unreachable,
            on_dropped=self._on_stream_dropped,
        ):
            self._last_event_at = dt_util.utcnow()
            self.household.handle_event(event)
            if event.kind in WALLET_EVENTS:
                self._wallet_checked = None  # read the balance at the next tick
            if event.kind in METER_EVENTS:
                self._on_meter_event(event.kind)
            self.async_publish()
            # Events come in bursts at gate closure and settlement: one
            # write for the burst (a lost one only means events resent).
            self._store.async_delay_save(self._state, STREAM_SAVE_DELAY)

    @callback
    def _on_stream_connected(self) -> None:
        """The grid accepted the stream: it is reachable, now, not at the next tick."""
        now = dt_util.utcnow()
        self._stream_failures = 0
        was_connected = self.household.connected
        self.household.note_contact(now)
        if not was_connected:
            self._update_issues(now)
        self.async_publish()

    @callback
    def _on_stream_dropped(self) -> None:
        # Until it is back, the tick fetches (and so finds out whether the grid is there).
        self._last_event_at = None

    @callback
    def _on_stream_unreachable(self, exc: Exception) -> None:
        LOGGER.debug("Live stream cannot reach the grid: %r", exc)
        self._last_event_at = None
        if self.household.connected:
            self.household.note_lost_contact(exc)
            self.async_publish()

    @callback
    def _on_meter_event(self, kind: str) -> None:
        """The grid's answer about a meter: its issues follow; an approval lets held work go."""
        self.update_meter_issues()
        if kind == "asset_approval":
            # Held readings and orders go out now, not at the next minute.
            self._traded = None
            self.config_entry.async_create_task(
                self.hass, self.async_tick(), "p2p_energy tick after an approval"
            )

    @callback
    def _on_household_event(self, event: HouseholdEvent) -> None:
        data = {**event.data, "config_entry_id": self.config_entry.entry_id}
        self.hass.bus.async_fire(BUS_EVENTS[event.kind], data)
        async_dispatcher_send(self.hass, signal_event(self.config_entry.entry_id), event)

    # -- repairs -----------------------------------------------------------------------------------

    def _update_issues(self, now: datetime) -> None:
        entry = self.config_entry
        household = self.household
        unreachable_id = f"{ISSUE_UNREACHABLE}_{entry.entry_id}"
        since = household.last_contact or self._started_at
        limit = UNREACHABLE_INTERVALS * household.interval
        if not household.connected and now - since >= limit:
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                unreachable_id,
                is_fixable=False,
                severity=ir.IssueSeverity.WARNING,
                translation_key=ISSUE_UNREACHABLE,
                translation_placeholders={
                    "grid_url": entry.data[CONF_GRID_URL],
                    "intervals": str(int((now - since) / household.interval)),
                },
            )
        elif household.connected:
            ir.async_delete_issue(self.hass, DOMAIN, unreachable_id)

        snapshot = household.snapshot(now)
        over_cap = {s.id: s for s in snapshot.over_cap}
        failed = snapshot.failed_payments
        self._sync_issues(
            ISSUE_OVER_CAP,
            {
                sid: {
                    "statement_id": sid,
                    "amount": _money(s.amount_due_micro - s.paid_micro, household),
                    "cap": _money(household.options.daily_cap_micro, household),
                }
                for sid, s in over_cap.items()
            },
            fixable=True,
        )
        unpaid = {s.id: s for s in snapshot.unpaid}
        self._sync_issues(
            ISSUE_PAYMENT_FAILED,
            {
                sid: {
                    "statement_id": sid,
                    "message": msg,
                    "amount": _money(
                        unpaid[sid].amount_due_micro - unpaid[sid].paid_micro, household
                    )
                    if sid in unpaid
                    else "?",
                    "address": str(entry.data[CONF_ADDRESS]),
                    "retry_at": _retry_time(household.payment_retry.get(sid), now),
                }
                for sid, msg in failed.items()
            },
            fixable=False,
        )
        key_issue = f"{ISSUE_KEY_REJECTED}_{entry.entry_id}"
        if household.key_rejected is not None:
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                key_issue,
                is_fixable=False,
                severity=ir.IssueSeverity.ERROR,
                translation_key=ISSUE_KEY_REJECTED,
                translation_placeholders={"reason": household.key_rejected.message},
            )
            entry.async_start_reauth(self.hass)
        else:
            ir.async_delete_issue(self.hass, DOMAIN, key_issue)

    @callback
    def update_refusal_issues(self) -> None:
        """One repair issue per asset whose readings the grid refused and the owner has not seen.

        Its translation follows the grid's error code (what the owner can do
        differs); a code this version does not know gets the generic text
        with the grid's own message.
        """
        refusals = self.household.refusals()
        shown = {asset: len(items) for asset, items in refusals.items()}
        if shown == self._refusals_shown:
            return
        self._refusals_shown = shown
        entry = self.config_entry
        titles = {str(sub.data["asset_id"]): sub.title for sub in entry.subentries.values()}
        wanted: dict[str, _Issue] = {}
        for asset, items in refusals.items():
            latest = items[-1]
            wanted[f"{REFUSAL_ISSUE_KIND}_{entry.entry_id}_{asset}"] = _Issue(
                REFUSAL_ISSUES.get(latest.code, ISSUE_REFUSED_OTHER),
                {
                    "asset": titles.get(asset, asset),
                    "count": str(len(items)),
                    "interval": dt_util.as_local(latest.reading.interval).strftime(
                        "%Y-%m-%d %H:%M"
                    ),
                    "energy_wh": str(latest.reading.energy_wh),
                    "code": latest.code,
                    "message": latest.message,
                },
                {"kind": REFUSAL_ISSUE_KIND, "entry_id": entry.entry_id, "asset_id": asset},
            )
        self._replace_issues((REFUSAL_ISSUE_KIND,), wanted)

    @callback
    def update_meter_issues(self) -> None:
        """Repair issues per asset for what the grid does not believe of it.

        An asset waiting for the operator's approval, or refused by the
        operator; readings settled at their plausible bound whose payout waits
        for the operator (the latest one shown, with how many wait). None is
        fixable: the operator decides, and each goes when the grid says so.
        """
        household = self.household
        holds = household.asset_holds()
        flags = household.reading_flags()
        shown = (holds, [f.key for f in flags])
        if shown == self._meter_issues_shown:
            return
        self._meter_issues_shown = shown
        subentries = {str(s.data["asset_id"]): s for s in self.config_entry.subentries.values()}
        wanted: dict[str, _Issue] = {}
        for asset, hold in holds.items():
            sub = subentries.get(asset)
            declared = hold.declared_power_w
            placeholders = {
                "asset": sub.title if sub is not None else asset,
                "declared": "?" if declared is None else f"{declared} W",
                "limit": self._approval_limit(sub),
                "message": hold.message,
            }
            kind = ISSUE_ASSET_WAITING if hold.status == WAITING else ISSUE_ASSET_REFUSED
            wanted[f"{kind}_{self.config_entry.entry_id}_{asset}"] = _Issue(kind, placeholders)
        by_asset: dict[str, list[ReadingFlag]] = {}
        for flag in flags:
            by_asset.setdefault(flag.asset, []).append(flag)
        for asset, asset_flags in by_asset.items():
            latest = max(asset_flags, key=lambda f: f.interval)
            sub = subentries.get(asset)
            flag_key = FLAG_ISSUES.get(latest.code, ISSUE_FLAGGED_OTHER)
            wanted[f"{FLAG_ISSUE_KIND}_{self.config_entry.entry_id}_{asset}"] = _Issue(
                flag_key,
                {
                    "asset": sub.title if sub is not None else asset,
                    "count": str(len(asset_flags)),
                    "interval": dt_util.as_local(latest.interval).strftime("%Y-%m-%d %H:%M"),
                    "reading_wh": str(latest.reading_wh),
                    "bound_wh": str(latest.bound_wh),
                    "code": latest.code,
                    "reason": latest.reason,
                },
            )
        self._replace_issues((ISSUE_ASSET_WAITING, ISSUE_ASSET_REFUSED, FLAG_ISSUE_KIND), wanted)

    def _approval_limit(self, sub: Any) -> str:
        """What the grid approves without its operator for an asset of this kind, in words."""
        limits = self.household.grid.approval_limits or {}
        if sub is None:
            return "?"
        kind = sub.data.get(CONF_KIND) if sub.subentry_type == SUBENTRY_SOURCE else "meter"
        limit = limits.get(f"{kind}_w")
        return "?" if limit is None or sub.data.get(CONF_RATED_POWER) is None else f"{limit} W"

    def _replace_issues(self, kinds: tuple[str, ...], wanted: dict[str, _Issue]) -> None:
        """Create the ``wanted`` issues (by id); delete the membership's other issues of
        ``kinds`` (their ids start with the kind and the entry)."""
        prefixes = tuple(f"{kind}_{self.config_entry.entry_id}_" for kind in kinds)
        registry = ir.async_get(self.hass)
        for domain, issue_id in list(registry.issues):
            if domain == DOMAIN and issue_id.startswith(prefixes) and issue_id not in wanted:
                ir.async_delete_issue(self.hass, DOMAIN, issue_id)
        for issue_id, issue in wanted.items():
            key = issue.translation_key
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                issue_id,
                is_fixable=issue.data is not None,
                severity=ir.IssueSeverity.WARNING,
                translation_key=key,
                translation_placeholders=issue.placeholders,
                data=issue.data,
            )

    def _sync_issues(self, kind: str, wanted: dict[str, dict[str, str]], *, fixable: bool) -> None:
        """One issue per statement in ``wanted``; the ones that resolved go."""
        entry_id = self.config_entry.entry_id
        self._replace_issues(
            (kind,),
            {
                f"{kind}_{entry_id}_{statement_id}": _Issue(
                    kind,
                    placeholders,
                    {"entry_id": entry_id, "statement_id": statement_id} if fixable else None,
                )
                for statement_id, placeholders in wanted.items()
            },
        )


@dataclass(frozen=True, slots=True)
class _Issue:
    """A repair issue to show: its text and, for one the owner can fix, its flow's data."""

    translation_key: str
    placeholders: dict[str, str]
    data: dict[str, str | int | float | None] | None = None


@callback
def async_delete_issues(hass: HomeAssistant, entry_id: str) -> None:
    """Delete every repair issue of one membership (each issue id names its entry)."""
    registry = ir.async_get(hass)
    for domain, issue_id in list(registry.issues):
        if domain == DOMAIN and f"_{entry_id}" in issue_id:
            ir.async_delete_issue(hass, DOMAIN, issue_id)


def _retry_time(retry: tuple[int, datetime] | None, now: datetime) -> str:
    """When a failed payment is tried again, in the owner's local time."""
    when = retry[1] if retry is not None else now
    return dt_util.as_local(max(when, now)).strftime("%Y-%m-%d %H:%M")


def _money(micro: int, household: Household) -> str:
    return f"{format_money_micro(micro)} {household.grid.currency}"

"""Meters the grid does not believe: the household sees why, as repair issues, and loses nothing.

Against a real grid with its default approval limits (30 kW of PV without
the operator): a source declared above them waits for the operator, its
readings are held (not set aside, not sent every minute) and go out when
the operator approves; a refusal replaces the waiting issue; a reading
above the approved rating is settled at its bound and shown until the
operator decides.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from freezegun.api import TickingDateTimeFactory
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_capture_events

from custom_components.p2p_energy.const import (
    DOMAIN,
    EVENT_ASSET_APPROVAL,
    EVENT_FLAG_DECISION,
    EVENT_READING_FLAGGED,
    SUBENTRY_SOURCE,
)
from p2p_energy_client.units import format_utc
from tests.support.grid_server import RunningGrid
from tests.support.home_assistant import (
    START,
    TEN,
    Member,
    Meters,
    add_asset,
    entity_of,
    recorded_attributes,
    setup_member,
    source,
    wait_for,
    walk,
)
from tests.support.meters import operator_api

BIG_PV = 50_000  # W: above the 30 kW the grid approves without its operator


async def _big_roof(
    hass: HomeAssistant, grid: RunningGrid, member: Member, meters: Meters
) -> tuple[MockConfigEntry, str]:
    """A membership with one 50 kW solar source measured by ``sensor.pv``; its asset id."""
    entry = member.entry(grid, trading_enabled=False)
    await setup_member(hass, entry)
    await add_asset(hass, entry.entry_id, SUBENTRY_SOURCE, source("Field PV", "sensor.pv", BIG_PV))
    (asset_id,) = entry.runtime_data.household.assets
    return entry, asset_id


async def _decide(
    grid: RunningGrid, member: Member, asset_id: str, body: dict[str, object]
) -> None:
    answer = await operator_api(
        grid, "POST", f"/assets/{member.keys.address}/{asset_id}/decision", body
    )
    assert answer.status_code == 200, answer.text


def _issue(
    hass: HomeAssistant, kind: str, entry: MockConfigEntry, asset_id: str
) -> ir.IssueEntry | None:
    return ir.async_get(hass).async_get_issue(DOMAIN, f"{kind}_{entry.entry_id}_{asset_id}")


async def test_waiting_asset_keeps_its_readings_until_the_operator_approves(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    join: Callable[..., Awaitable[Member]],
) -> None:
    member = await join("Big roof")
    meters = Meters(hass, {"sensor.pv": 3000.0})
    entry, asset_id = await _big_roof(hass, grid, member, meters)
    household = entry.runtime_data.household
    approvals = async_capture_events(hass, EVENT_ASSET_APPROVAL)

    # The 10:00 interval's reading (sent at 10:17, after the meters' grace) is
    # refused: the asset waits for the operator.
    await walk(hass, grid, clock, meters, START.replace(minute=19))
    issue = _issue(hass, "asset_waiting", entry, asset_id)
    assert issue is not None
    assert not issue.is_fixable
    assert issue.translation_key == "asset_waiting"
    placeholders = issue.translation_placeholders or {}
    assert placeholders["asset"] == "Field PV"
    assert (placeholders["declared"], placeholders["limit"]) == ("50000 W", "30000 W")
    assert "waiting for the operator" in placeholders["message"]
    # Held, not set aside: no refusal issue, nothing rejected, the reading still queued.
    assert household.refusals() == {}
    assert household.to_state()["outbox"]["rejected"] == []
    held = household.to_state()["outbox"]["pending"]
    assert [r["interval"] for r in held] == [format_utc(TEN)]

    # Not sent again every minute: one refusal, and the next try an interval later.
    await walk(hass, grid, clock, meters, START.replace(minute=27))
    (hold,) = household.asset_holds().values()
    assert hold.tries == 1
    assert hold.retry_at is not None
    assert hold.retry_at - clock().replace(tzinfo=TEN.tzinfo) > timedelta(minutes=1)
    assert len(household.to_state()["outbox"]["pending"]) == 1

    # The operator approves: the issue goes and the held readings reach the grid at once.
    await _decide(grid, member, asset_id, {"approve": True, "note": "inspected"})
    await wait_for(hass, lambda: household.snapshot(START).readings_pending == 0)
    assert _issue(hass, "asset_waiting", entry, asset_id) is None
    accepted = await grid.client(member.keys).readings(TEN, START.replace(minute=30))
    assert [(r.interval, r.asset) for r in accepted] == [(TEN, asset_id)]
    assert accepted[0].energy_wh == held[0]["energy_wh"]
    assert household.snapshot(START).last_readings[asset_id] == accepted[-1].energy_wh
    (event,) = approvals
    assert (event.data["asset"], event.data["status"]) == (asset_id, "approved")
    assert event.data["config_entry_id"] == entry.entry_id
    market = hass.states.get(entity_of(hass, entry, "event", "market"))
    assert market is not None
    assert market.attributes["event_type"] == "asset_approval"
    assert recorded_attributes(market) == {
        "event_type": "asset_approval",
        "friendly_name": market.name,
    }
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_refused_asset_replaces_the_waiting_issue(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    join: Callable[..., Awaitable[Member]],
) -> None:
    member = await join("Refused roof")
    meters = Meters(hass, {"sensor.pv": 3000.0})
    entry, asset_id = await _big_roof(hass, grid, member, meters)
    household = entry.runtime_data.household
    await walk(hass, grid, clock, meters, START.replace(minute=19))
    assert _issue(hass, "asset_waiting", entry, asset_id) is not None

    await _decide(grid, member, asset_id, {"approve": False, "note": "no such inverter"})
    await wait_for(hass, lambda: _issue(hass, "asset_refused", entry, asset_id) is not None)
    assert _issue(hass, "asset_waiting", entry, asset_id) is None
    issue = _issue(hass, "asset_refused", entry, asset_id)
    assert issue is not None
    assert not issue.is_fixable
    placeholders = issue.translation_placeholders or {}
    assert "no such inverter" in placeholders["message"]
    assert placeholders["declared"] == "50000 W"
    # Its readings can never be accepted: set aside, not queued, not a refusal issue.
    await walk(hass, grid, clock, meters, START.replace(minute=35))
    assert household.snapshot(START).readings_pending == 0
    rejected = household.to_state()["outbox"]["rejected"]
    assert rejected and {r["code"] for r in rejected} == {"asset_not_approved"}
    assert household.refusals() == {}
    assert [i for (d, i) in ir.async_get(hass).issues if d == DOMAIN and "refused_" in i] == [
        f"asset_refused_{entry.entry_id}_{asset_id}"
    ]

    # Removing the membership removes its issues.
    assert await hass.config_entries.async_remove(entry.entry_id)
    await hass.async_block_till_done()
    assert [i for (d, i) in ir.async_get(hass).issues if d == DOMAIN] == []


async def test_flagged_reading_is_shown_until_the_operator_decides(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    join: Callable[..., Awaitable[Member]],
) -> None:
    member = await join("Flagged roof")
    meters = Meters(hass, {"sensor.pv": 6000.0})
    entry, asset_id = await _big_roof(hass, grid, member, meters)
    household = entry.runtime_data.household
    flagged = async_capture_events(hass, EVENT_READING_FLAGGED)
    decided = async_capture_events(hass, EVENT_FLAG_DECISION)
    # An inspection found a 2 kW inverter: believed up to 2 kW x (15 + 5) minutes.
    await _decide(grid, member, asset_id, {"approve": True, "power_w": 2_000})

    # 10:00 is settled when its window closes at 10:30: 6 kW is more than 2 kW.
    await walk(hass, grid, clock, meters, START.replace(minute=35))
    await wait_for(hass, lambda: bool(household.reading_flags()))
    assert _issue(hass, "asset_waiting", entry, asset_id) is None
    issue = _issue(hass, "reading_flagged", entry, asset_id)
    assert issue is not None
    assert not issue.is_fixable
    assert issue.translation_key == "reading_flagged_over_rating"
    (reading,) = await grid.client(member.keys).readings(TEN, TEN + timedelta(minutes=15))
    placeholders = issue.translation_placeholders or {}
    assert placeholders["reading_wh"] == str(reading.energy_wh)
    assert int(placeholders["reading_wh"]) > 667
    assert placeholders["bound_wh"] == "667"
    assert placeholders["code"] == "over_rating"
    assert placeholders["count"] == "1"
    assert "payout waits for the operator" in placeholders["reason"]
    (event,) = flagged
    assert (event.data["asset"], event.data["interval"]) == (asset_id, format_utc(TEN))
    assert (event.data["bound_wh"], event.data["code"]) == (667, "over_rating")

    # The operator settles it at the bound: the issue goes.
    answer = await operator_api(
        grid,
        "POST",
        "/flags/decision",
        {
            "participant": member.keys.address,
            "interval": format_utc(TEN),
            "asset": asset_id,
            "decision": "bound",
        },
    )
    assert answer.status_code == 200, answer.text
    await wait_for(hass, lambda: _issue(hass, "reading_flagged", entry, asset_id) is None)
    assert household.reading_flags() == []
    (event,) = decided
    assert (event.data["asset"], event.data["decision"]) == (asset_id, "bound")
    assert await hass.config_entries.async_unload(entry.entry_id)

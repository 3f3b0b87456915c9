"""Diagnostics: the membership's state for a bug report, with its secrets redacted."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from freezegun.api import TickingDateTimeFactory
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator
from syrupy.assertion import SnapshotAssertion

from custom_components.p2p_energy.const import CONF_ASSET_ID, CONF_SECRET_KEY
from tests.support.grid_server import RunningGrid
from tests.support.home_assistant import MINUTE, household_keys

# Moments on the ticking clock, and the client's sequence number (which starts
# from the time): checked, then written as placeholders.
TIMES = frozenset({"now", "last_contact", "last_time"})
SEQUENCES = frozenset({"last_seq"})


def stable(value: Any, names: dict[str, str], clock: TickingDateTimeFactory) -> Any:
    """``value`` with random ids (keys too) named by ``names``, times and sequences checked."""
    if isinstance(value, dict):
        shown: dict[str, Any] = {}
        for key, item in value.items():
            if key in TIMES and item is not None:
                moment = datetime.fromisoformat(item)
                assert abs(moment.replace(tzinfo=None) - clock()) < MINUTE, (key, item)
                shown[key] = "<time>"
            elif key in SEQUENCES:
                now_ms = clock().replace(tzinfo=UTC).timestamp() * 1000
                assert isinstance(item, int) and abs(item - now_ms) < 60_000, (key, item)
                shown[key] = "<sequence>"
            else:
                shown[names.get(key, key)] = stable(item, names, clock)
        return shown
    if isinstance(value, list):
        return [stable(item, names, clock) for item in value]
    if isinstance(value, str):
        return names.get(value, value)
    return value


async def test_diagnostics(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    membership: MockConfigEntry,
    hass_client: ClientSessionGenerator,
    snapshot: SnapshotAssertion,
) -> None:
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, membership)
    # The grid's port and the asset ids are new on every run.
    names = {grid.url: "<grid url>"} | {
        sub.data[CONF_ASSET_ID]: f"<asset {sub.title}>" for sub in membership.subentries.values()
    }
    assert stable(diagnostics, names, clock) == snapshot


async def test_diagnostics_redact_secrets(
    hass: HomeAssistant, membership: MockConfigEntry, hass_client: ClientSessionGenerator
) -> None:
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, membership)
    assert diagnostics["entry"]["data"][CONF_SECRET_KEY] == "**REDACTED**"
    assert household_keys("Sunny").seed_hex not in repr(diagnostics)
    assert diagnostics["grid"]["grid"] == "test-grid"
    assert diagnostics["connected"] is True
    assert diagnostics["readings_pending"] == 0

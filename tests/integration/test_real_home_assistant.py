"""A real Home Assistant joins a real grid from one pasted invitation and rides out an outage.

No test harness on either side: ``p2p-grid serve`` runs as its own process
on SQLite, on the real clock; ``python -m homeassistant`` runs as another,
with this repository's integration in its ``custom_components``. The test
does what an operator and a household owner do, through the same doors:

* the operator runs ``p2p-grid invite`` and hands over the printed link;
* the owner is created through the onboarding API, and the integration is
  added through the config-flow REST API with the link pasted as one string;
* the entities must then be in ``/api/states`` with the units and classes
  the Energy dashboard accepts (its own ``recorder/list_statistic_ids`` and
  ``energy/validate`` say so), with values the grid's state explains;
* the grid process is killed: its entities go unavailable and the
  connectivity sensor turns off (the live stream notices at once, no need
  to wait for the minute tick); the grid is started again on the same port
  and database, and the entities come back, the config entry loaded all
  along, never reloaded (its state changes, watched over the websocket,
  show none).

Nothing waits for Home Assistant's minute tick or a delivery interval:
starting the two processes takes most of the time (about a minute on a
loaded two-core machine).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import GridProcess
from tests.support.real_home_assistant import (
    HomeAssistantApi,
    HomeAssistantProcess,
    Membership,
    add_membership,
    energy_grid_prefs,
    operator,
    participants,
    real_grid,
)

pytestmark = [pytest.mark.usefixtures("socket_enabled"), pytest.mark.slow]

# The grid's defaults, as the integration learns them from the grid.
CURRENCY = "EUR"
MONEY = (
    "revenue",
    "cost",
    "savings",
    "sharing_value",
    "grid_import_cost",
    "grid_export_compensation",
)
MARKET_ENERGY = ("energy_sold", "energy_bought", "energy_shared")
# How long the household may take to notice the outage and the grid's return.
NOTICE = 30.0
RETURN = 60.0


@pytest.fixture
async def grid(tmp_path: Path) -> AsyncIterator[GridProcess]:
    """``p2p-grid serve`` on the real clock, its config and database in ``tmp_path``."""
    async with real_grid(tmp_path / "grid") as server:
        yield server


@pytest.fixture
async def home_assistant(tmp_path: Path) -> AsyncIterator[HomeAssistantProcess]:
    """``python -m homeassistant`` with the integration, on a free loopback port."""
    process = HomeAssistantProcess(tmp_path)
    try:
        process.start()
        await process.ready()
        yield process
    finally:
        await process.stop()


def number(state: dict[str, Any]) -> Decimal:
    return Decimal(state["state"])


def check_energy_dashboard_entities(states: dict[str, dict[str, Any]], ids: dict[str, str]) -> None:
    """Units and classes as the Energy dashboard's pickers want them; values of a new member."""
    for key in MONEY:
        attributes = states[ids[key]]["attributes"]
        assert attributes["unit_of_measurement"] == CURRENCY, key
        assert attributes["device_class"] == "monetary", key
        assert attributes["state_class"] == "total", key
        # Nothing traded or settled yet: exactly nothing, not unknown.
        assert number(states[ids[key]]) == 0, key
    for key in MARKET_ENERGY:
        attributes = states[ids[key]]["attributes"]
        assert attributes["unit_of_measurement"] == "kWh", key
        assert attributes["state_class"] == "total_increasing", key
        assert "device_class" not in attributes, key  # market trades, not a meter
        assert number(states[ids[key]]) == 0, key
    for key in ("amount_due", "wallet_balance"):
        assert states[ids[key]]["attributes"]["unit_of_measurement"] == CURRENCY, key
        assert number(states[ids[key]]) == 0, key  # nothing minted, nothing due
    for key in ("effective_import_price", "effective_export_price"):
        assert states[ids[key]]["attributes"]["unit_of_measurement"] == f"{CURRENCY}/kWh", key
        assert states[ids[key]]["state"] == "unknown", key  # no settled energy to divide by
    connected = states[ids["connected"]]
    assert (connected["state"], connected["attributes"]["device_class"]) == ("on", "connectivity")


async def check_energy_dashboard_accepts(api: HomeAssistantApi, membership: Membership) -> None:
    """The Energy dashboard offers the money sensors and takes them as the grid's cost."""
    ids = membership.entities
    # What the dashboard's cost and compensation pickers list: statistics with a sum.
    offered = {
        item["statistic_id"]: item
        for item in await api.command("recorder/list_statistic_ids", statistic_type="sum")
    }
    for key in ("grid_import_cost", "grid_export_compensation"):
        assert offered[ids[key]]["statistics_unit_of_measurement"] == CURRENCY, key
    for key in MARKET_ENERGY:
        assert offered[ids[key]]["statistics_unit_of_measurement"] == "kWh", key
    # The set-up docs/households/home-assistant.md describes, saved and validated.
    await api.command("energy/save_prefs", **energy_grid_prefs(membership))
    validation = await api.command("energy/validate")
    issues = [issue for source in validation["energy_sources"] for issue in source]
    # Long-term statistics are first compiled at the next five minutes; until
    # then every statistic is "not defined". Anything else is a real problem.
    assert [i for i in issues if i["type"] != "statistics_not_defined"] == [], issues


async def test_joins_shows_energy_entities_and_survives_a_grid_outage(
    grid: GridProcess, home_assistant: HomeAssistantProcess
) -> None:
    started = time.monotonic()
    link = (await operator(grid, "invite", "--no-qr")).strip()
    assert link.startswith(f"{grid.url}/join#"), link
    api = await home_assistant.onboard()
    try:
        membership = await add_membership(api, link, "Household")
        entry_id, address, ids = membership.entry_id, membership.address, membership.entities
        # The grid knows the household by the address Home Assistant shows.
        (participant,) = await participants(grid)
        assert (participant["address"], participant["name"]) == (address, "Household")
        states = await api.states()
        check_energy_dashboard_entities(states, ids)
        assert states[ids["wallet_address"]]["state"] == address
        await check_energy_dashboard_accepts(api, membership)

        entry_changes = await api.subscribe("config_entries/subscribe", type_filter=["hub"])
        grid_shown = [ids[key] for key in (*MONEY, *MARKET_ENERGY, "amount_due", "wallet_balance")]

        # The grid goes away.
        assert grid.proc is not None
        grid.kill_group()
        states = await api.wait_for_states(
            lambda s: (
                s[ids["connected"]]["state"] == "off"
                and all(s[e]["state"] == "unavailable" for e in grid_shown)
            ),
            within=NOTICE,
            what="the grid's entities unavailable, the connectivity sensor off",
        )
        # Known without the grid: still shown.
        assert states[ids["wallet_address"]]["state"] == address

        # The grid comes back on the same port and database.
        await grid.run()
        states = await api.wait_for_states(
            lambda s: (
                s[ids["connected"]]["state"] == "on"
                and all(s[e]["state"] != "unavailable" for e in grid_shown)
            ),
            within=RETURN,
            what="the grid's entities back, the connectivity sensor on",
        )
        check_energy_dashboard_entities(states, ids)

        # Back without a reload: the entry never left the loaded state.
        (entry,) = [
            e
            for e in await api.get("/api/config/config_entries/entry")
            if e["entry_id"] == entry_id
        ]
        assert entry["state"] == "loaded"
        changes = [
            change["entry"]["state"]
            for batch in entry_changes
            for change in batch
            if change["entry"]["entry_id"] == entry_id
        ]
        assert set(changes) <= {"loaded"}, changes
        log = home_assistant.log.read_text(errors="replace")
        assert log.count("Cannot reach the grid at") == 1, home_assistant.tail()
        assert log.count("is reachable again") == 1, home_assistant.tail()
        # Nothing went wrong on the way: no error, no deprecated use reported.
        problems = [
            line
            for line in log.splitlines()
            if "p2p_energy" in line
            and (" ERROR " in line or "Detected that custom integration" in line)
        ]
        assert problems == [], problems
    finally:
        await api.close()
    print(f"real Home Assistant, grid outage and return: {time.monotonic() - started:.1f} s")

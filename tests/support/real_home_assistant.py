"""A real Home Assistant process with this repository's integration, driven over its APIs.

Not the test harness: ``python -m homeassistant`` from the test's virtualenv,
in a process group of its own, with a configuration folder in the test's
``tmp_path`` (the integration symlinked into its ``custom_components``).
The test talks to it as a browser would, and nothing else:

* :meth:`HomeAssistantProcess.onboard` creates the owner through the
  onboarding REST API (``/api/onboarding/users`` gives an authorization code,
  ``/auth/token`` exchanges it) and returns a :class:`HomeAssistantApi`;
* :class:`HomeAssistantApi` calls the REST API and the websocket API
  (``command``; ``subscribe`` collects a subscription's events);
* :func:`real_grid` serves a grid with ``p2p-grid serve`` on the real clock,
  :func:`operator` runs the operator's ``p2p-grid`` commands beside it, and
  :func:`add_membership` pastes an invitation link into the config flow;
  :func:`energy_grid_prefs` is the Energy dashboard set-up the households'
  guide describes.

:meth:`HomeAssistantProcess.stop` ends the process group (SIGTERM, then
SIGKILL) and reaps it, so no Home Assistant outlives its test.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.grid_server import sqlite_url
from tests.support.operator_cli import write_config
from tests.support.processes import P2P_GRID, START_TIMEOUT, GridProcess, free_port, stop_group

REPO = Path(__file__).resolve().parents[2]
INTEGRATION = REPO / "custom_components" / "p2p_energy"
OWNER = {"name": "Owner", "username": "owner", "password": "correct horse battery staple"}

# Only what the integration and the Energy dashboard need: no default_config
# (its frontend, cloud and discovery are not installed or would reach out).
# Two template sensors stand in for the household's physical grid meter, as
# the Energy dashboard's consumption and return need one of their own.
CONFIGURATION = """\
homeassistant:
  name: Real home
  latitude: 52.52
  longitude: 13.40
  elevation: 34
  unit_system: metric
  time_zone: UTC
  currency: EUR
  country: DE
  language: en
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
onboarding:
energy:
recorder:
  commit_interval: 1
logger:
  default: warning
  logs:
    custom_components.p2p_energy: debug
template:
  - sensor:
      - name: Grid meter import
        unique_id: grid_meter_import
        unit_of_measurement: kWh
        device_class: energy
        state_class: total_increasing
        state: "1234.5"
      - name: Grid meter export
        unique_id: grid_meter_export
        unit_of_measurement: kWh
        device_class: energy
        state_class: total_increasing
        state: "321.0"
"""


class HomeAssistantProcess:
    """``python -m homeassistant`` on 127.0.0.1 with the integration installed."""

    def __init__(self, directory: Path, *, port: int | None = None) -> None:
        self.config = directory / "ha"
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output = directory / "home-assistant.out"
        self.proc: subprocess.Popen[bytes] | None = None
        self.config.mkdir(parents=True, exist_ok=True)
        (self.config / "configuration.yaml").write_text(CONFIGURATION.format(port=self.port))
        components = self.config / "custom_components"
        components.mkdir(exist_ok=True)
        (components / "p2p_energy").symlink_to(INTEGRATION, target_is_directory=True)
        # Nothing of the test run's environment that would change Home Assistant.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("P2P_", "PYTEST"))}

    @property
    def log(self) -> Path:
        """Home Assistant's own log file."""
        return self.config / "home-assistant.log"

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        with self.output.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "homeassistant", "--config", str(self.config), "--skip-pip"],
                cwd=self.config,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def ready(self, within: float = START_TIMEOUT) -> None:
        """Wait until Home Assistant answers (its HTTP server starts last)."""
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession(self.url) as http:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"Home Assistant exited: {self.tail()}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get("/api/onboarding") as response:
                        if response.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise AssertionError(f"Home Assistant did not start: {self.tail()}")
                await asyncio.sleep(0.25)

    async def onboard(self) -> HomeAssistantApi:
        """Create the owner as the onboarding page does; an API client logged in as them."""
        client_id = f"{self.url}/"
        async with aiohttp.ClientSession(self.url) as http:
            async with http.post(
                "/api/onboarding/users", json={**OWNER, "client_id": client_id, "language": "en"}
            ) as response:
                assert response.status == 200, await response.text()
                code = (await response.json())["auth_code"]
            async with http.post(
                "/auth/token",
                data={"grant_type": "authorization_code", "code": code, "client_id": client_id},
            ) as response:
                assert response.status == 200, await response.text()
                tokens: dict[str, Any] = await response.json()
        return HomeAssistantApi(self.url, tokens, client_id)

    def tail(self, lines: int = 60) -> str:
        text = ""
        for path in (self.output, self.log):
            if path.exists():
                text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text or "(no log)"

    async def stop(self, within: float = 30.0) -> None:
        """SIGTERM the group, SIGKILL it after ``within`` seconds; reap the process."""
        if self.proc is not None:
            await stop_group(self.proc, within)


class HomeAssistantApi:
    """Home Assistant's REST and websocket APIs with the owner's access token."""

    def __init__(self, url: str, tokens: dict[str, Any], client_id: str) -> None:
        self.url = url
        self.tokens = tokens  # as /auth/token gave them: what the frontend keeps too
        self.client_id = client_id
        self.token = str(tokens["access_token"])
        self.http = aiohttp.ClientSession(url, headers={"Authorization": f"Bearer {self.token}"})
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._results: dict[int, asyncio.Future[Any]] = {}
        self._subscriptions: dict[int, list[Any]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def get(self, path: str) -> Any:
        async with self.http.get(path) as response:
            assert response.status == 200, f"GET {path}: {response.status} {await response.text()}"
            return await response.json()

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        async with self.http.post(path, json=body) as response:
            assert response.status == 200, f"POST {path}: {response.status} {await response.text()}"
            return await response.json()

    async def finish_onboarding(self) -> None:
        """The onboarding's remaining steps, as the owner clicks through them (else the
        frontend shows the onboarding page instead of the one asked for)."""
        await self.post("/api/onboarding/core_config", {})
        await self.post("/api/onboarding/analytics", {})
        await self.post(
            "/api/onboarding/integration",
            {"client_id": self.client_id, "redirect_uri": f"{self.url}/?auth_callback=1"},
        )

    async def states(self) -> dict[str, dict[str, Any]]:
        return {state["entity_id"]: state for state in await self.get("/api/states")}

    async def wait_for_states(
        self,
        check: Callable[[dict[str, dict[str, Any]]], bool],
        *,
        within: float,
        what: str,
    ) -> dict[str, dict[str, Any]]:
        """Poll ``/api/states`` until ``check`` holds; the states then."""
        deadline = time.monotonic() + within
        while True:
            states = await self.states()
            if check(states):
                return states
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {within} s: {what}")
            await asyncio.sleep(0.25)

    # -- websocket ---------------------------------------------------------------------

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        if self._ws is None:
            ws = await self.http.ws_connect("/api/websocket")
            assert (await ws.receive_json())["type"] == "auth_required"
            await ws.send_json({"type": "auth", "access_token": self.token})
            reply = await ws.receive_json()
            assert reply["type"] == "auth_ok", reply
            self._ws = ws
            self._reader = asyncio.create_task(self._read(ws))
        return self._ws

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            data = message.json()
            for item in data if isinstance(data, list) else [data]:
                if item["type"] == "event" and item["id"] in self._subscriptions:
                    self._subscriptions[item["id"]].append(item["event"])
                elif item["type"] == "result" and item["id"] in self._results:
                    self._results.pop(item["id"]).set_result(item)

    async def command(self, command: str, *, events: list[Any] | None = None, **fields: Any) -> Any:
        """One websocket command; its result (an error fails the test).

        With ``events``, a subscription: its events are appended to that list as they come.
        """
        ws = await self._connect()
        message_id = next(self._ids)
        if events is not None:
            self._subscriptions[message_id] = events
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._results[message_id] = future
        await ws.send_json({"type": command, **fields, "id": message_id})
        reply = await asyncio.wait_for(future, 30)
        assert reply["success"], f"{command}: {reply}"
        return reply["result"]

    async def subscribe(self, command: str, **fields: Any) -> list[Any]:
        """Subscribe; the list the subscription's events are appended to as they come."""
        events: list[Any] = []
        await self.command(command, events=events, **fields)
        return events

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self.http.close()


# -- the grid and the membership ------------------------------------------------------------


GRID_ID = "our-street"  # write_config's grid


@asynccontextmanager
async def real_grid(folder: Path) -> AsyncIterator[GridProcess]:
    """``p2p-grid serve`` on the real clock and a free loopback port, its files in ``folder``.

    Its ``public_url`` is that address, so the invitation links it prints work.
    """
    port = free_port()
    config = write_config(folder, public_url=f"http://127.0.0.1:{port}")
    server = GridProcess("grid", sqlite_url(folder), folder, config=config, clock=None, port=port)
    try:
        await server.run()
        yield server
    finally:
        await server.stop()


async def operator(grid: GridProcess, *args: str) -> str:
    """A ``p2p-grid`` command as the operator runs it beside the grid; its standard output."""
    process = await asyncio.create_subprocess_exec(
        P2P_GRID,
        *args,
        "--config",
        str(grid.directory / "grid.toml"),
        cwd=grid.directory,
        env={k: v for k, v in os.environ.items() if not k.startswith("P2P_")},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    return out.decode()


@dataclass(frozen=True)
class Membership:
    """A config entry made by the config flow: its id, the household's address, its entities."""

    entry_id: str
    address: str
    entities: dict[str, str]  # entity id by key (the end of its unique id)


async def add_membership(api: HomeAssistantApi, link: str, name: str) -> Membership:
    """Add the integration as the owner does: the link pasted, a name, a new key."""
    form = await api.post(
        "/api/config/config_entries/flow", {"handler": "p2p_energy", "show_advanced_options": False}
    )
    assert (form["type"], form["step_id"]) == ("form", "user"), form
    result = await api.post(
        f"/api/config/config_entries/flow/{form['flow_id']}",
        {"invitation": link, "name": name, "key_source": "generate"},
    )
    assert result["type"] == "create_entry", result
    entry_id: str = result["result"]["entry_id"]
    # The membership's device (the assets' hang below it) carries the address.
    devices = await api.command("config/device_registry/list")
    (device,) = [
        d for d in devices if entry_id in d["config_entries"] and d["via_device_id"] is None
    ]
    address: str = device["serial_number"]
    prefix = f"{GRID_ID}_{address}_"
    registry = await api.command("config/entity_registry/list")
    entities = {
        item["unique_id"].removeprefix(prefix): item["entity_id"]
        for item in registry
        if item["config_entry_id"] == entry_id
    }
    return Membership(entry_id, address, entities)


async def participants(grid: GridProcess) -> list[dict[str, Any]]:
    """``p2p-grid participants list``."""
    listed: list[dict[str, Any]] = json.loads(await operator(grid, "participants", "list"))
    return listed


def energy_grid_prefs(membership: Membership) -> dict[str, Any]:
    """The Energy dashboard's grid as docs/households/home-assistant.md sets it up.

    The physical meter's import and export (here the configuration's template
    sensors), with this integration's cost and compensation entities.
    """
    ids = membership.entities
    return {
        "energy_sources": [
            {
                "type": "grid",
                "flow_from": [
                    {
                        "stat_energy_from": "sensor.grid_meter_import",
                        "stat_cost": ids["grid_import_cost"],
                        "entity_energy_price": None,
                        "number_energy_price": None,
                    }
                ],
                "flow_to": [
                    {
                        "stat_energy_to": "sensor.grid_meter_export",
                        "stat_compensation": ids["grid_export_compensation"],
                        "entity_energy_price": None,
                        "number_energy_price": None,
                    }
                ],
                "cost_adjustment_day": 0,
            }
        ],
        "device_consumption": [],
    }

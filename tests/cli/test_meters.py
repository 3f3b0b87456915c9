"""``p2p-grid meters``: the operator approves assets and releases held payouts from the shell.

Run as an operator runs it (a config file in a folder), against a real grid
server on SQLite and PostgreSQL: a waiting asset is listed, approved at a
lower rating, and its household's flagged reading released at the bound so
that the payout goes on.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from grid_server.cli.main import main
from grid_server.config import load_settings
from p2p_energy_client.protocol import Reading, SourceDecl, SourceKind
from p2p_energy_client.units import format_utc
from tests.cli.conftest import Places
from tests.support import grid_server as support
from tests.support.market import issue_statements, only_statement
from tests.support.operator_cli import write_config

pytestmark = pytest.mark.usefixtures("socket_enabled")

FLOAT_POLICY = '[grid.ledger]\npayout_policy = "float"\npayout_threshold_micro = 1000\n'
BIG_PV = SourceDecl("pv", "Field", SourceKind.SOLAR, 50_000)


async def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    status = await asyncio.to_thread(main, list(args))
    out, _ = capsys.readouterr()
    return status, out


async def test_approve_then_release_a_held_payout(
    database_url: str,
    places: Places,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = write_config(
        places.root / "srv", grid_id="test-grid", database=database_url, extra=FLOAT_POLICY
    )
    monkeypatch.setenv("P2P_LEDGER_KEY", support.test_ledger_key(database_url).seed_hex)
    settings = load_settings(config).model_copy(
        update={"operator_token": support.OPERATOR_TOKEN, "run_cycle": False}
    )
    where = ("--config", str(config))
    async with support.run_grid_server(database_url, settings=settings) as grid:
        home = await grid.member("Big")
        await home.set_assets([BIG_PV], [])
        status, out = await cli(capsys, "meters", "assets", "--waiting", *where)
        assert status == 0
        assert [(a["participant"], a["asset"], a["status"]) for a in json.loads(out)] == [
            (home.address, "pv", "pending")
        ]
        # Above what was declared: refused, nothing stored.
        status, out = await cli(
            capsys, "meters", "approve", home.address, "pv", "--power-w", "60000", *where
        )
        assert status == 1 and "rated_power_w" in out
        status, out = await cli(
            capsys, "meters", "approve", home.address, "pv", "--power-w", "10000", *where
        )
        assert status == 0 and json.loads(out)["status"] == "approved"

        t = grid.grid.schedule.start_of(grid.clock.now()) + timedelta(minutes=15)
        grid.clock.set(t + timedelta(minutes=15, seconds=1))
        await grid.run_cycle()
        await home.send_readings([Reading(t, "pv", 12_000)])
        await issue_statements(grid, t)
        await grid.grid.payments.mint(grid.grid.payments.address, 10_000_000)
        assert (await grid.grid.payouts.run_once()).paid == []

        status, out = await cli(capsys, "meters", "flags", *where)
        (flag,) = json.loads(out)
        assert (flag["asset"], flag["bound_wh"], flag["code"]) == ("pv", 3_334, "over_rating")
        status, out = await cli(
            capsys,
            "meters",
            "release",
            home.address,
            "pv",
            format_utc(t),
            "--settle",
            "bound",
            "--note",
            "inverter limit",
            *where,
        )
        assert status == 0 and json.loads(out)["decision"] == "bound"
        report = await grid.grid.payouts.run_once()
        assert [p["recipient"] for p in report.paid] == [home.address]
        assert (await only_statement(home)).status == "paid"
        status, out = await cli(
            capsys,
            "meters",
            "release",
            home.address,
            "pv",
            format_utc(t),
            "--settle",
            "bound",
            *where,
        )
        assert status == 1 and "no undecided flag" in out

"""``p2p-grid ledger``: the grid's payout account against what producers are owed.

On the local ledger the grid's account starts empty; a producer's statement
waits until the operator funds it. ``ledger show`` says by how much and prints
the command that funds it, and that command, run as printed, lets the payout
through (SQLite and PostgreSQL, against a real grid server).
"""

from __future__ import annotations

import asyncio
import json
import shlex

import httpx
import pytest

from grid_server.cli.main import main
from grid_server.config import load_settings
from tests.cli.conftest import Places
from tests.support import grid_server as support
from tests.support.market import issue_statements, only_statement, trade
from tests.support.operator_cli import write_config

pytestmark = pytest.mark.usefixtures("socket_enabled")

AUTH = {"Authorization": f"Bearer {support.OPERATOR_TOKEN}"}
FLOAT_POLICY = '[grid.ledger]\npayout_policy = "float"\npayout_threshold_micro = 1000\n'


async def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = await asyncio.to_thread(main, list(args))
    out, err = capsys.readouterr()
    return status, out, err


async def test_show_what_payouts_lack_and_fund_it(
    database_url: str,
    places: Places,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = write_config(
        places.root / "srv", grid_id="test-grid", database=database_url, extra=FLOAT_POLICY
    )
    key = support.test_ledger_key(database_url).seed_hex
    monkeypatch.setenv("P2P_LEDGER_KEY", key)  # the server's key, as an operator has it
    settings = load_settings(config).model_copy(
        update={"operator_token": support.OPERATOR_TOKEN, "run_cycle": False}
    )
    async with support.run_grid_server(database_url, settings=settings) as grid:
        seller, _, t = await trade(grid)
        await issue_statements(grid, t)
        owed = -(await only_statement(grid.client(seller.keys))).amount_due_micro
        assert owed > 0
        address = grid.grid.payments.address

        status, out, err = await cli(capsys, "ledger", "show", "--config", str(config))
        assert status == 0
        assert json.loads(out)["payouts"] == {
            "unit": "micro-EUR",
            "available": 0,
            "payable_now": owed,
            "lacks": owed,
            "owed_to_producers": owed,
        }
        hint = err.strip()
        assert hint.startswith("payouts wait: the grid's account lacks 0.")
        command = hint.split("fund it with: ", 1)[1]
        assert command.startswith(f"p2p-grid ledger mint {address} ")
        # The dashboard's Payments view says the same.
        async with httpx.AsyncClient(base_url=grid.url, headers=AUTH) as http:
            view = (await http.get("/dashboard/api/payments")).json()
        assert view["payout_outlook"] == {**json.loads(out)["payouts"], "funding": hint}

        # The command as printed funds exactly what is missing.
        status, _, _ = await cli(capsys, *shlex.split(command)[1:], "--config", str(config))
        assert status == 0
        status, out, err = await cli(capsys, "ledger", "show", "--config", str(config))
        assert json.loads(out)["payouts"]["lacks"] == 0 and err == ""
        status, out, err = await cli(capsys, "ledger", "pay-producers", "--config", str(config))
        assert [p["amount"] for p in json.loads(out)["paid"]] == [owed]
        assert (await only_statement(grid.client(seller.keys))).status == "paid"
        status, out, err = await cli(capsys, "ledger", "show", "--config", str(config))
        assert json.loads(out)["payouts"] == {
            "unit": "micro-EUR",
            "available": 0,
            "payable_now": 0,
            "lacks": 0,
            "owed_to_producers": 0,
        }

"""Sharing after delivery through a real server: settlement, statements, the audit log.

Four households in three zones trade ahead and then deliver something else;
with ``[grid.sharing]`` on, settlement shares their deviations before the
utility covers the rest (docs/developers/sharing.md). Checked here against
the stored rows, the client's statements and ``audit verify``, on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import pytest

from grid_server.config import (
    ConfigError,
    GridConfig,
    PriceConfig,
    SharingConfig,
    ZoneConfig,
    load_settings,
)
from grid_server.service.audit_verify import verify_log
from p2p_energy_client.grid_client import GridClient
from p2p_energy_client.models import SHARED_LINE_KINDS
from p2p_energy_client.protocol import OrderSpec, Reading, Side, canonical_json
from p2p_energy_client.units import format_utc
from tests.support.audit_scenario import Surgeon
from tests.support.factories import MAIN, PV
from tests.support.grid_server import OPERATOR_TOKEN, RunningGrid, run_grid_server

INTERVALS = 3


def test_the_grid_config_turns_sharing_on(tmp_path: Path) -> None:
    path = tmp_path / "grid.toml"
    path.write_text(
        '[grid]\nid = "g"\n[grid.sharing]\nenabled = true\nkey = "dynamic"\n'
        "shortfall_share = 0.25\n"
    )
    sharing = load_settings(path).grid.sharing
    assert sharing.info().to_wire() == {
        "enabled": True,
        "key": "dynamic",
        "shortfall_share": "0.25",
        "surplus_share": "0.5",
        "static_shares": {},
    }
    rule = sharing.rule()
    assert rule is not None and rule.shortfall_share == Fraction(1, 4)
    # Off by default: no rule, and /grid says so.
    assert GridConfig().sharing.rule() is None and not GridConfig().sharing.info().enabled


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ('key = "random"', "grid.sharing.key: must be one of proportional, dynamic, static"),
        ("shortfall_share = 1.5", "grid.sharing.shortfall_share: must be within [0, 1]"),
        ('surplus_share = "half"', "grid.sharing.surplus_share: 'half' is not a decimal number"),
        (
            'static_shares = { "0xab" = 1 }',
            "grid.sharing.static_shares: '0xab' is not a participant",
        ),
        ('static_shares = {}\nkey = "static"', "the static key needs a positive weight"),
        ("colour = 1", "grid.sharing.colour"),
    ],
)
def test_a_bad_sharing_setting_is_refused_by_name(
    tmp_path: Path, setting: str, message: str
) -> None:
    path = tmp_path / "grid.toml"
    path.write_text(f'[grid]\nid = "g"\n[grid.sharing]\nenabled = true\n{setting}\n')
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(path)


def sharing_grid(*, enabled: bool) -> GridConfig:
    return GridConfig(
        id="test-grid",
        name="Test grid",
        settlement_window_seconds=900,
        settlement_period_seconds=3600,
        prices=(PriceConfig(retail="0.3000", feed_in="0.0800"),),
        zones=(
            ZoneConfig(id="root"),
            ZoneConfig(id="north", parent="root", fee="0.0100"),
            # Little room: the market's flow and sharing compete for it.
            ZoneConfig(
                id="south", parent="root", fee="0.0200", capacity_up_wh=150, capacity_down_wh=150
            ),
        ),
        sharing=SharingConfig(enabled=enabled),
    )


async def _trade_and_deliver(grid: RunningGrid) -> dict[str, GridClient]:
    """Trade ahead, deliver something else, settle and issue the hour's statements."""
    alice = await grid.member("Alice")
    bob = await grid.member("Bob", zone="north")
    carol = await grid.member("Carol", role="consumer")
    dave = await grid.member("Dave", zone="south")
    for client in (alice, bob, dave):
        await client.set_assets([PV], [MAIN])
    await carol.set_assets([], [MAIN])
    schedule = grid.grid.schedule
    first = schedule.start_of(grid.clock.now()) + timedelta(minutes=30)
    for step in range(INTERVALS):
        t = first + timedelta(minutes=15 * step)
        await alice.submit_orders(t, [OrderSpec("s", Side.SELL, 600, "0.1200")])
        await bob.submit_orders(t, [OrderSpec("b", Side.BUY, 400, "0.2500")])
        await carol.submit_orders(t, [OrderSpec("b", Side.BUY, 200, "0.2800")])
        await dave.submit_orders(t, [OrderSpec("s", Side.SELL, 100, "0.1000")])
    for step in range(INTERVALS):
        t = first + timedelta(minutes=15 * step)
        grid.clock.set(t + timedelta(minutes=15, seconds=1))  # type: ignore[attr-defined]
        await grid.run_cycle()
        # Alice and Dave deliver more than they sold, Bob and Carol use more than they bought.
        await alice.send_readings([Reading(t, "pv", 900 + step), Reading(t, "main", 100)])
        await bob.send_readings([Reading(t, "pv", 0), Reading(t, "main", 550 + 7 * step)])
        await carol.send_readings([Reading(t, "main", 300 + step)])
        await dave.send_readings([Reading(t, "pv", 400), Reading(t, "main", 50)])
    period_end = schedule.period_end(schedule.period_start(first + timedelta(minutes=45)))
    grid.clock.set(period_end + timedelta(minutes=16))  # type: ignore[attr-defined]
    await grid.run_cycle()
    await grid.run_cycle()
    return {"Alice": alice, "Bob": bob, "Carol": carol, "Dave": dave}


async def _line_rows(grid: RunningGrid) -> list[Any]:
    surgeon = Surgeon(grid.grid.db.url)
    try:
        return await surgeon.rows(
            "SELECT l.interval_start, p.address, l.kind, l.energy_wh, l.price_ticks, "
            "l.amount_micro FROM line_items l LEFT JOIN participants p ON p.id = l.participant_id"
        )
    finally:
        await surgeon.close()


@pytest.fixture
async def shared(database_url: str) -> tuple[str, dict[str, GridClient], list[Any]]:
    async with run_grid_server(database_url, grid=sharing_grid(enabled=True)) as grid:
        clients = await _trade_and_deliver(grid)
        info = await clients["Alice"].grid_info()
        assert info.sharing.enabled and info.sharing.key == "proportional"
        assert (info.sharing.shortfall_share, info.sharing.surplus_share) == ("0.5", "0.5")
        # Each household's statement carries its shared lines, and equals its lines.
        for name, client in clients.items():
            kinds = set()
            for statement in await client.statements():
                detail = await client.statement(statement.id)
                assert sum(x.amount_micro for x in detail.lines) == statement.amount_due_micro
                kinds |= {x.kind for x in detail.lines}
            expected = "shared_in" if name in ("Bob", "Carol") else "shared_out"
            assert expected in kinds, (name, kinds)
        rows = await _line_rows(grid)
        overview = await _dashboard(grid, "overview", params={"hours": 24})
        households = (await _dashboard(grid, "participants"))["participants"]
    # The operator's overview: shared energy per interval and in all, next to the market's.
    shared_in = [r for r in rows if r.kind == "shared_in"]
    assert overview["grid"]["sharing"]["enabled"] is True
    assert overview["totals"]["shared_wh"] == sum(r.energy_wh for r in shared_in) > 0
    assert (
        overview["totals"]["neighbourhood_wh"]
        == overview["totals"]["local_wh"] + overview["totals"]["shared_wh"]
    )
    # The participants view: each household's shared energy, both ways.
    by_address = {r["address"]: r for r in households}
    for kind in ("shared_in", "shared_out"):
        mine: Counter[str] = Counter()
        for r in rows:
            if r.kind == kind:
                mine[r.address] += r.energy_wh
        assert {
            a: by_address[a][f"{kind}_wh"] for a in by_address if by_address[a][f"{kind}_wh"]
        } == dict(mine)
    per_interval: Counter[str] = Counter()
    for r in shared_in:
        per_interval[format_utc(_utc(r.interval_start))] += r.energy_wh
    assert {p["interval"]: p["shared_wh"] for p in overview["series"] if p["shared_wh"]} == dict(
        per_interval
    )
    return database_url, clients, rows


def _utc(value: Any) -> datetime:
    """A timestamp read with raw SQL (SQLite gives text, PostgreSQL a naive or aware datetime)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def _dashboard(grid: RunningGrid, path: str, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    async with httpx.AsyncClient(base_url=grid.url, timeout=10, headers=headers) as http:
        response = await http.get(f"/dashboard/api/{path}", **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def _metered(step: int) -> dict[str, int]:
    """Each household's metered net export in the step-th interval (the readings above)."""
    return {"Alice": 800 + step, "Bob": -(550 + 7 * step), "Carol": -(300 + step), "Dave": 350}


async def test_sharing_conserves_money_and_energy(
    shared: tuple[str, dict[str, GridClient], list[Any]],
) -> None:
    _url, clients, rows = shared
    names = {c.address: n for n, c in clients.items()}
    every: dict[Any, list[Any]] = defaultdict(list)
    for row in rows:
        every[row.interval_start].append(row)
    # Intervals without trades or readings settle to a single zero rounding line.
    assert sum(r.amount_micro for r in rows) == 0
    by_interval = {t: x for t, x in every.items() if any(r.address for r in x)}
    assert len(by_interval) == INTERVALS
    for step, t in enumerate(sorted(by_interval)):
        lines = by_interval[t]
        # Money: every interval sums to exactly zero, the grid earns the spread.
        assert sum(r.amount_micro for r in lines) == 0
        spread = [r for r in lines if r.kind == "grid:sharing_spread"]
        assert len(spread) == 1 and spread[0].amount_micro < 0  # the grid receives it
        shared_in = sum(r.energy_wh for r in lines if r.kind == "shared_in")
        shared_out = sum(r.energy_wh for r in lines if r.kind == "shared_out")
        assert shared_in == shared_out == spread[0].energy_wh > 0
        # Energy, per household: traded position plus every deviation line = metered.
        signed = {
            "market_sell": 1,
            "market_buy": -1,
            "shared_out": 1,
            "shared_in": -1,
            "surplus_feed_in": 1,
            "shortfall_retail": -1,
        }
        net: Counter[str] = Counter()
        for r in lines:
            if r.address is not None:
                net[names[r.address]] += signed[r.kind] * r.energy_wh
        assert dict(net) == _metered(step)
        # Nobody pays more for shared energy than retail, or earns less than feed-in.
        for r in lines:
            if r.kind == "shared_in":
                assert 0 < r.amount_micro <= (300_000 * r.energy_wh + 999) // 1000
            if r.kind == "shared_out":
                assert -r.amount_micro >= 80_000 * r.energy_wh // 1000


async def test_without_sharing_the_utility_takes_every_deviation(database_url: str) -> None:
    async with run_grid_server(database_url, grid=sharing_grid(enabled=False)) as grid:
        clients = await _trade_and_deliver(grid)
        assert not (await clients["Bob"].grid_info()).sharing.enabled
        rows = await _line_rows(grid)
        surgeon = Surgeon(grid.grid.db.url)
        try:
            bodies = await surgeon.rows("SELECT body FROM log_entries WHERE kind = 'settlement'")
        finally:
            await surgeon.close()
    assert not [r for r in rows if r.kind in SHARED_LINE_KINDS or "sharing" in r.kind]
    assert bodies and all("sharing" not in json.loads(bytes(b.body)) for b in bodies)


async def _settlement_entry(surgeon: Surgeon) -> tuple[int, dict[str, Any]]:
    """The first settlement entry that shares (intervals before the trades have no lines)."""
    entries = await surgeon.rows(
        "SELECT seq, body FROM log_entries WHERE kind = 'settlement' ORDER BY seq"
    )
    records = [(e.seq, json.loads(bytes(e.body))) for e in entries]
    return next(
        (seq, body)
        for seq, body in records
        if any(x["kind"] == "shared_out" for x in body["lines"])
    )


async def test_audit_verify_replays_sharing(
    shared: tuple[str, dict[str, GridClient], list[Any]],
) -> None:
    url, _clients, _rows = shared
    surgeon = Surgeon(url)
    try:
        _seq, record = await _settlement_entry(surgeon)
        assert record["sharing"] == {
            "enabled": True,
            "key": "proportional",
            "shortfall_share": "0.5",
            "surplus_share": "0.5",
            "static_shares": {},
        }
        assert record["interval_minutes"] == 15
        report = await verify_log(url, workers=0)
        assert report.ok, report.problem
        assert report.intervals_compared >= INTERVALS
    finally:
        await surgeon.close()


async def test_audit_verify_catches_one_unit_on_a_shared_line(
    shared: tuple[str, dict[str, GridClient], list[Any]],
) -> None:
    url, _clients, _rows = shared
    surgeon = Surgeon(url)
    try:
        (line,) = await surgeon.rows(
            "SELECT id, amount_micro FROM line_items WHERE kind = 'shared_in' ORDER BY id LIMIT 1"
        )
        await surgeon.run(
            "UPDATE line_items SET amount_micro = amount_micro + 1 WHERE id = :i", i=line.id
        )
        report = await verify_log(url, workers=0)
        assert not report.ok
        assert "line_items" in str(report.problem) and "shared_in" in str(report.problem)
    finally:
        await surgeon.close()


async def test_audit_verify_catches_a_consistent_rewrite_of_a_shared_amount(
    shared: tuple[str, dict[str, GridClient], list[Any]],
) -> None:
    """Log, table and every hash after it rewritten: the re-settlement still disagrees."""
    url, _clients, _rows = shared
    surgeon = Surgeon(url)
    try:
        seq, record = await _settlement_entry(surgeon)
        line = next(x for x in record["lines"] if x["kind"] == "shared_out")
        line["amount_micro"] -= 1
        spread = next(x for x in record["lines"] if x["kind"] == "grid:sharing_spread")
        spread["amount_micro"] += 1  # the interval still sums to zero
        await surgeon.drop_triggers()
        await surgeon.run(
            "UPDATE log_entries SET body = :b WHERE seq = :s", b=canonical_json(record), s=seq
        )
        await surgeon.run(
            "UPDATE line_items SET amount_micro = amount_micro - 1 WHERE id = ("
            "SELECT id FROM line_items WHERE kind = 'shared_out' AND interval_start = ("
            "SELECT MIN(interval_start) FROM line_items WHERE kind = 'shared_out') "
            "AND participant_id = (SELECT id FROM participants WHERE address = :a))",
            a=line["participant"],
        )
        await surgeon.run(
            "UPDATE line_items SET amount_micro = amount_micro + 1 WHERE id = ("
            "SELECT id FROM line_items WHERE kind = 'grid:sharing_spread' AND interval_start = ("
            "SELECT MIN(interval_start) FROM line_items WHERE kind = 'shared_out'))"
        )
        await surgeon.rewrite_chain(seq)
        report = await verify_log(url, workers=0)
        assert not report.ok
        problem = str(report.problem)
        assert problem.startswith(f"log entry {seq}: ")
        assert "does not follow from its inputs" in problem and "shared_out" in problem
    finally:
        await surgeon.close()

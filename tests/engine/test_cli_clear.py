"""``p2p-grid clear``: the issue's format, the shipped example, and bad input."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from grid_server.cli.main import main
from grid_server.domain.market import OrderArrays, ZoneTree, clear
from grid_server.domain.market.jsonio import loads_book

from .validity import assert_optimal

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "book.json"

ISSUE_BOOK: dict[str, Any] = {
    "currency": "EUR",
    "interval": {"start": "2026-11-27T10:00:00Z", "minutes": 15},
    "utility": {"retail_price": "0.3000", "feed_in_price": "0.0800"},
    "zones": [
        {"id": "root"},
        {
            "id": "feeder-1",
            "parent": "root",
            "fee": "0.0100",
            "capacity_up_wh": 40000,
            "capacity_down_wh": 40000,
        },
    ],
    "orders": [
        {"id": "b1", "zone": "feeder-1", "side": "buy", "energy_wh": 1500, "price": "0.2500"},
        {"id": "s1", "zone": "root", "side": "sell", "energy_wh": 800, "price": "0.1000"},
    ],
}

ISSUE_RESULT = {
    "welfare": "0.112000",
    "zones": [
        {
            "id": "root",
            "price": "0.2400",
            "utility_buy_wh": 0,
            "utility_sell_wh": 0,
            "flow_to_parent_wh": 0,
        },
        {
            "id": "feeder-1",
            "price": "0.2500",
            "utility_buy_wh": 0,
            "utility_sell_wh": 0,
            "flow_to_parent_wh": -800,
        },
    ],
    "fills": [{"id": "b1", "filled_wh": 800}, {"id": "s1", "filled_wh": 800}],
}


def _write(tmp_path: Path, book: object) -> Path:
    path = tmp_path / "book.json"
    path.write_text(book if isinstance(book, str) else json.dumps(book))
    return path


def test_issue_example_prints_the_issue_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["clear", str(_write(tmp_path, ISSUE_BOOK))]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out) == ISSUE_RESULT
    assert out.err == ""


def test_output_file_and_nothing_on_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "result.json"
    assert main(["clear", str(_write(tmp_path, ISSUE_BOOK)), "-o", str(target)]) == 0
    assert capsys.readouterr().out == ""
    assert json.loads(target.read_text()) == ISSUE_RESULT


def test_shipped_example_clears_optimally_through_the_installed_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "grid_server.cli.main", "clear", str(EXAMPLE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    book = loads_book(EXAMPLE.read_text())
    result = clear(book)
    tree = ZoneTree.build(book.zones)
    assert_optimal(tree, book.utility, OrderArrays.from_orders(book.orders, tree), result)
    assert [z["id"] for z in printed["zones"]] == [z.id for z in book.zones]
    assert [f["id"] for f in printed["fills"]] == [o.id for o in book.orders]
    assert {f["id"]: f["filled_wh"] for f in printed["fills"]} == result.fill_of()
    # The example is meant to show a congested link and energy moving both ways.
    flows = {z["id"]: z["flow_to_parent_wh"] for z in printed["zones"]}
    assert flows["feeder-north"] == 3000  # its capacity up
    assert min(flows.values()) < 0 < max(flows.values())


def _edit(change: Any) -> dict[str, Any]:
    book = copy.deepcopy(ISSUE_BOOK)
    change(book)
    return book


BAD_BOOKS: list[tuple[str, object, str]] = [
    (
        "unknown zone",
        _edit(lambda b: b["orders"][0].update(zone="nowhere")),
        "orders[0].zone: unknown zone 'nowhere'",
    ),
    (
        "cycle",
        _edit(
            lambda b: b["zones"].extend([{"id": "x", "parent": "y"}, {"id": "y", "parent": "x"}])
        ),
        "zones[2].parent: 'x' -> 'y' -> 'x' is a cycle",
    ),
    (
        "two roots",
        _edit(lambda b: b["zones"].append({"id": "other"})),
        "zones[2].parent: missing, but 'root' (zones[0]) is already the root",
    ),
    (
        "no root",
        _edit(lambda b: b["zones"][0].update(parent="feeder-1")),
        "zones: no root zone",
    ),
    (
        "negative energy",
        _edit(lambda b: b["orders"][1].update(energy_wh=-5)),
        "orders[1].energy_wh: must not be negative",
    ),
    (
        "fractional energy",
        _edit(lambda b: b["orders"][1].update(energy_wh=12.5)),
        "orders[1].energy_wh: must be an integer",
    ),
    (
        "energy as a string",
        _edit(lambda b: b["orders"][1].update(energy_wh="800")),
        "orders[1].energy_wh: must be an integer",
    ),
    (
        "boolean energy",
        _edit(lambda b: b["orders"][1].update(energy_wh=True)),
        "orders[1].energy_wh: must be an integer",
    ),
    (
        "retail below feed-in",
        _edit(lambda b: b["utility"].update(retail_price="0.0500")),
        "utility.retail_price: 0.0500 is below the feed-in price 0.0800",
    ),
    (
        "duplicate order id",
        _edit(lambda b: b["orders"][1].update(id="b1")),
        "orders[1].id: duplicate order id 'b1' (also orders[0])",
    ),
    (
        "duplicate zone id",
        _edit(lambda b: b["zones"].append({"id": "feeder-1", "parent": "root"})),
        "zones[2].id: duplicate zone id 'feeder-1'",
    ),
    (
        "malformed price",
        _edit(lambda b: b["orders"][0].update(price="0.1.2")),
        "orders[0].price: '0.1.2' is not a decimal price",
    ),
    (
        "price as a JSON number",
        _edit(lambda b: b["orders"][0].update(price=0.25)),
        "orders[0].price: must be a decimal string",
    ),
    (
        "too many decimals",
        _edit(lambda b: b["zones"][1].update(fee="0.0000001")),
        "zones[1].fee: '0.0000001' is not a decimal price",
    ),
    ("missing price", _edit(lambda b: b["orders"][0].pop("price")), "orders[0].price: missing"),
    ("missing utility", _edit(lambda b: b.pop("utility")), "utility: missing"),
    ("missing orders", _edit(lambda b: b.pop("orders")), "orders: missing"),
    (
        "misspelt field",
        _edit(lambda b: b["zones"][1].update(capacity_up=5)),
        "zones[1].capacity_up: unknown field",
    ),
    (
        "negative capacity",
        _edit(lambda b: b["zones"][1].update(capacity_down_wh=-1)),
        "zones[1].capacity_down_wh: must not be negative",
    ),
    (
        "negative fee",
        _edit(lambda b: b["zones"][1].update(fee="-0.01")),
        "zones[1].fee: must not be negative (-0.0100)",
    ),
    (
        "fee on the root",
        _edit(lambda b: b["zones"][0].update(fee="0.01")),
        "zones[0].fee: the root zone has no parent link",
    ),
    (
        "bad side",
        _edit(lambda b: b["orders"][0].update(side="hold")),
        "orders[0].side: must be 'buy' or 'sell'",
    ),
    (
        "interval not aligned",
        _edit(lambda b: b["interval"].update(start="2026-11-27T10:05:00Z")),
        "interval.start: is not the start of a 15-minute interval",
    ),
    (
        "bad currency",
        _edit(lambda b: b.update(currency="euro")),
        "currency: must be an ISO 4217 code",
    ),
    (
        "orders not a list",
        _edit(lambda b: b.update(orders={})),
        "orders: must be a list, not an object",
    ),
    (
        "order not an object",
        _edit(lambda b: b["orders"].append(3)),
        "orders[2]: must be an object, not a number",
    ),
    ("not JSON", '{"zones": [', "book: not valid JSON"),
    ("NaN", '{"x": NaN}', "book: NaN is not a number JSON allows"),
    (
        "duplicate key",
        json.dumps(ISSUE_BOOK).replace('"price": "0.2500"', '"price": "0.2500", "price": "0.2600"'),
        "orders[0].price: appears twice",
    ),
]


@pytest.mark.parametrize(("name", "book", "message"), BAD_BOOKS, ids=[b[0] for b in BAD_BOOKS])
def test_bad_input_is_named_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, book: object, message: str
) -> None:
    target = tmp_path / "result.json"
    assert main(["clear", str(_write(tmp_path, book)), "-o", str(target)]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert message in out.err
    assert not target.exists()


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["clear", str(tmp_path / "absent.json")]) == 2
    out = capsys.readouterr()
    assert out.out == "" and "cannot read" in out.err


def test_bad_input_through_a_subprocess(tmp_path: Path) -> None:
    path = _write(tmp_path, _edit(lambda b: b["orders"][0].update(price="0.1.2")))
    done = subprocess.run(
        [sys.executable, "-m", "grid_server.cli.main", "clear", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert "orders[0].price: '0.1.2' is not a decimal price" in done.stderr

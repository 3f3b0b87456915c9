"""``p2p-grid bench clearing`` and the random books it clears."""

from __future__ import annotations

import json

import numpy as np
import pytest

from grid_server.cli.main import main
from grid_server.domain.market import clear_arrays
from grid_server.domain.market.synthetic import FEED_IN_TICKS, RETAIL_TICKS, random_book

from .validity import assert_optimal


def _bench(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    status = main(["bench", "clearing", *args])
    report = json.loads(capsys.readouterr().out)
    assert status == 0
    assert isinstance(report, dict)
    return report


def test_prints_one_json_line_and_agrees_with_highs(capsys: pytest.CaptureFixture[str]) -> None:
    report = _bench(capsys, "--orders", "3000", "--zones", "12", "--check", "--repeat", "2")
    assert report["orders"] == 3000 and report["zones"] == 12 and report["repeat"] == 2
    assert isinstance(report["seconds"], float) and report["seconds"] > 0
    assert report["agree"] is True
    assert float(str(report["welfare"])) == pytest.approx(
        float(str(report["highs_welfare"])), rel=1e-6
    )


def test_books_are_reproducible_per_seed(capsys: pytest.CaptureFixture[str]) -> None:
    first = _bench(capsys, "--orders", "500", "--zones", "5", "--seed", "7", "--repeat", "1")
    again = _bench(capsys, "--orders", "500", "--zones", "5", "--seed", "7", "--repeat", "1")
    other = _bench(capsys, "--orders", "500", "--zones", "5", "--seed", "8", "--repeat", "1")
    assert first["welfare"] == again["welfare"] != other["welfare"]


def test_random_book_is_cleared_optimally() -> None:
    tree, utility, orders = random_book(2000, 25, seed=3)
    prices = orders.price_ticks
    # Realistic but with tails: some limits beyond each utility price.
    assert (prices < FEED_IN_TICKS).any() and (prices > RETAIL_TICKS).any()
    result = clear_arrays(tree, utility, orders)
    assert_optimal(tree, utility, orders, result)
    # Capacities bind somewhere, or the tree would be one zone in disguise.
    capped = np.abs(result.flow_to_parent_wh) == np.where(
        result.flow_to_parent_wh > 0, tree.cap_up_wh, tree.cap_down_wh
    )
    assert (capped & (result.flow_to_parent_wh != 0)).any()


def test_rejects_a_non_positive_order_count(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "clearing", "--orders", "0"])
    assert exit_info.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err

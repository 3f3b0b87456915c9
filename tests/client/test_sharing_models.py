"""The wire forms sharing after delivery adds: the grid's rule and the shared line items."""

from __future__ import annotations

from datetime import UTC, datetime

from p2p_energy_client.models import (
    PARTICIPANT_LINE_KINDS,
    SHARED_LINE_KINDS,
    SHARING_OFF,
    GridInfo,
    LineItem,
    PriceStep,
    SharingInfo,
)

T = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def _info(sharing: SharingInfo) -> GridInfo:
    step = PriceStep(T, "0.3000", "0.0800")
    return GridInfo(
        "g",
        "Grid",
        "EUR",
        15,
        300,
        900,
        3600,
        7200,
        300,
        step,
        (step,),
        (),
        "local",
        None,
        T,
        1,
        sharing=sharing,
    )


def test_the_rule_round_trips_and_old_grids_do_not_share() -> None:
    rule = SharingInfo(True, "static", "0.25", "0.5", {"0xb": 2, "0xa": 1})
    info = _info(rule)
    wire = info.to_wire()
    assert wire["sharing"] == {
        "enabled": True,
        "key": "static",
        "shortfall_share": "0.25",
        "surplus_share": "0.5",
        "static_shares": {"0xa": 1, "0xb": 2},  # in address order: one canonical form
    }
    assert GridInfo.from_wire(wire) == info
    # A grid from before sharing existed announces nothing: it does not share.
    del wire["sharing"]
    assert GridInfo.from_wire(wire).sharing == SHARING_OFF
    assert not SHARING_OFF.enabled


def test_shared_lines_parse_as_line_items_of_their_own() -> None:
    assert set(SHARED_LINE_KINDS) < set(PARTICIPANT_LINE_KINDS)
    line = LineItem(T, "shared_in", 200, "0.250000", 50_000)
    assert LineItem.from_wire(line.to_wire()) == line

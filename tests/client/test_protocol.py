"""Envelopes and payloads: signing, verification and every refusal path."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from p2p_energy_client.crypto import KeyPair, b64encode
from p2p_energy_client.protocol import (
    Assets,
    ErrorCode,
    Join,
    MeterDecl,
    Orders,
    OrderSpec,
    ProtocolError,
    Reading,
    Readings,
    Side,
    SourceDecl,
    SourceKind,
    canonical_json,
    check_freshness,
    check_id,
    open_envelope,
    sign,
)

NOW = datetime(2026, 11, 27, 10, 3, tzinfo=UTC)
INTERVAL = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


@pytest.fixture
def keys() -> KeyPair:
    return KeyPair.from_hex("c0035e1c8cda12eb55aa656a8a9ddc29cfa36c08edf9a16a95d8857253a3aa05")


def reading_envelope(keys: KeyPair, seq: int = 1) -> dict[str, Any]:
    return sign(keys, "demo", seq, Readings((Reading(INTERVAL, "solar-1", 512),)), ts=NOW)


def refusal(wire: object) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        open_envelope(wire)
    return info.value


def test_round_trip_every_body(keys: KeyPair) -> None:
    bodies = [
        Join("INV-123", "Müller household"),
        Assets(
            (SourceDecl("pv", "Roof", SourceKind.SOLAR, 8000),),
            (MeterDecl("grid", "Grid import"), MeterDecl("plug", "Dishwasher", 2000)),
        ),
        Readings((Reading(INTERVAL, "pv", 0), Reading(INTERVAL, "grid", 300)), correction=True),
        Orders(INTERVAL, (OrderSpec("s1", Side.SELL, 900, "0.1200"),), cancel=("old",)),
    ]
    for seq, body in enumerate(bodies, start=1):
        envelope = open_envelope(sign(keys, "demo", seq, body, ts=NOW))
        assert envelope.payload.body == body
        assert envelope.sender == keys.address
        assert envelope.payload.header.seq == seq
        check_freshness(envelope, "demo", NOW)


def test_signature_is_over_canonical_json(keys: KeyPair) -> None:
    wire = reading_envelope(keys)
    # Reordering keys changes nothing: the signature covers the canonical form.
    wire["payload"] = dict(reversed(list(wire["payload"].items())))
    assert open_envelope(wire).payload.header.seq == 1
    assert canonical_json({"b": 1, "a": [True, None, "é"]}) == b'{"a":[true,null,"\xc3\xa9"],"b":1}'


def test_tampered_payload_is_bad_signature(keys: KeyPair) -> None:
    wire = reading_envelope(keys)
    wire["payload"]["readings"][0]["energy_wh"] = 513
    err = refusal(wire)
    assert err.code is ErrorCode.BAD_SIGNATURE
    assert err.status == 401


def test_signature_of_other_key_is_bad_signature(keys: KeyPair) -> None:
    wire = reading_envelope(keys)
    wire["public_key"] = KeyPair.generate().public_key_b64
    assert refusal(wire).code is ErrorCode.BAD_SIGNATURE


def test_sender_must_be_the_signing_key(keys: KeyPair) -> None:
    other = KeyPair.generate()
    wire = reading_envelope(keys)
    wire["payload"]["sender"] = other.address
    wire = sign_raw(keys, wire["payload"])
    err = refusal(wire)
    assert err.code is ErrorCode.KEY_MISMATCH
    assert err.field == "payload.sender"


def sign_raw(keys: KeyPair, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "payload": payload,
        "public_key": keys.public_key_b64,
        "signature": b64encode(keys.sign(canonical_json(payload))),
    }


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda p: p["readings"][0].update(energy_wh=-1), "payload.readings[0].energy_wh"),
        (lambda p: p["readings"][0].update(energy_wh=1.5), "payload.readings[0].energy_wh"),
        (lambda p: p["readings"][0].update(energy_wh=True), "payload.readings[0].energy_wh"),
        (lambda p: p["readings"][0].update(energy_wh="5"), "payload.readings[0].energy_wh"),
        (
            lambda p: p["readings"][0].update(interval="2026-11-27T10:00:00+02:00"),
            "payload.readings[0].interval",
        ),
        (lambda p: p["readings"][0].update(asset="bad id"), "payload.readings[0].asset"),
        (lambda p: p["readings"][0].update(extra=1), "payload.readings[0].extra"),
        (lambda p: p["readings"].append(dict(p["readings"][0])), "payload.readings[1]"),
        (lambda p: p.update(readings=[]), "payload.readings"),
        (lambda p: p.update(seq=0), "payload.seq"),
        (lambda p: p.update(type="nope"), "payload.type"),
        (lambda p: p.update(sender="0xABC"), "payload.sender"),
        (lambda p: p.pop("ts"), "payload.ts"),
        (lambda p: p.update(hack=1), "payload.hack"),
    ],
)
def test_invalid_fields_are_named(keys: KeyPair, mutate: Any, field: str) -> None:
    payload = copy.deepcopy(reading_envelope(keys)["payload"])
    mutate(payload)
    err = refusal(sign_raw(keys, payload))
    assert err.field == field, err
    assert err.code is ErrorCode.INVALID_FIELD
    assert field in err.message


@pytest.mark.parametrize(
    "name",
    ["", " padded", "a\u202eevil", "tab\there", "x" * 65, "e\u0301"],  # RLO, control, NFD
)
def test_names_refuse_unicode_tricks(keys: KeyPair, name: str) -> None:
    payload = sign(keys, "demo", 1, Join("INV", "ok"), ts=NOW)["payload"]
    payload["name"] = name
    assert refusal(sign_raw(keys, payload)).field == "payload.name"


BATTERY_ASSETS = Assets(
    (
        SourceDecl("pv", "Roof", SourceKind.SOLAR, 8000),
        SourceDecl(
            "battery",
            "Home battery",
            SourceKind.BATTERY,
            5000,
            charge_meter="battery-charge",
            usable_capacity_wh=10_000,
        ),
    ),
    (MeterDecl("house", "House"), MeterDecl("battery-charge", "Battery charging", 5000)),
)


def assets_payload(keys: KeyPair) -> dict[str, Any]:
    return copy.deepcopy(sign(keys, "demo", 1, BATTERY_ASSETS, ts=NOW)["payload"])


def test_battery_links_round_trip(keys: KeyPair) -> None:
    envelope = open_envelope(sign(keys, "demo", 1, BATTERY_ASSETS, ts=NOW))
    assert envelope.payload.body == BATTERY_ASSETS
    battery = BATTERY_ASSETS.sources[1].to_wire()
    assert (battery["charge_meter"], battery["usable_capacity_wh"]) == ("battery-charge", 10_000)


def test_sources_without_battery_links_keep_their_wire_form(keys: KeyPair) -> None:
    # Households that predate the battery fields send and sign exactly what they did.
    plain = SourceDecl("battery", "Home battery", SourceKind.BATTERY, 5000)
    assert plain.to_wire() == {
        "id": "battery",
        "name": "Home battery",
        "kind": "battery",
        "rated_power_w": 5000,
    }
    payload = assets_payload(keys)
    for field in ("charge_meter", "usable_capacity_wh"):
        del payload["sources"][1][field]
    body = open_envelope(sign_raw(keys, payload)).payload.body
    assert isinstance(body, Assets)
    assert body.sources[1] == plain


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (
            lambda p: p["sources"][0].update(charge_meter="battery-charge"),
            "payload.sources[0].charge_meter",
        ),
        (
            lambda p: p["sources"][0].update(usable_capacity_wh=1000),
            "payload.sources[0].usable_capacity_wh",
        ),
        (
            lambda p: p["sources"][1].update(usable_capacity_wh=0),
            "payload.sources[1].usable_capacity_wh",
        ),
        (
            lambda p: p["sources"][1].update(usable_capacity_wh=1.5),
            "payload.sources[1].usable_capacity_wh",
        ),
        (
            lambda p: p["sources"][1].update(usable_capacity_wh=True),
            "payload.sources[1].usable_capacity_wh",
        ),
        (
            lambda p: p["sources"][1].update(usable_capacity_wh=10**12 + 1),
            "payload.sources[1].usable_capacity_wh",
        ),
        (
            lambda p: p["sources"][1].update(charge_meter="bad id"),
            "payload.sources[1].charge_meter",
        ),
        (
            lambda p: p["sources"][1].update(charge_meter="nowhere"),
            "payload.sources[1].charge_meter",
        ),
        # A source is not a meter: the charging is measured by a consumer meter.
        (lambda p: p["sources"][1].update(charge_meter="pv"), "payload.sources[1].charge_meter"),
        (
            lambda p: p["sources"].append(
                dict(p["sources"][1], id="battery-2", name="Second battery")
            ),
            "payload.sources[2].charge_meter",
        ),
    ],
)
def test_battery_link_refusals_are_named(keys: KeyPair, mutate: Any, field: str) -> None:
    payload = assets_payload(keys)
    mutate(payload)
    err = refusal(sign_raw(keys, payload))
    assert err.field == field, err
    assert err.code is ErrorCode.INVALID_FIELD
    assert field in err.message


def test_envelope_shape_errors(keys: KeyPair) -> None:
    assert refusal([]).code is ErrorCode.INVALID_FIELD
    wire = reading_envelope(keys)
    del wire["signature"]
    assert refusal(wire).code is ErrorCode.MALFORMED
    wire = reading_envelope(keys)
    wire["signature"] = "AAAA"
    assert refusal(wire).field == "signature"
    wire = reading_envelope(keys)
    wire["x"] = 1
    assert refusal(wire).code is ErrorCode.MALFORMED


def test_freshness(keys: KeyPair) -> None:
    envelope = open_envelope(reading_envelope(keys))
    with pytest.raises(ProtocolError) as info:
        check_freshness(envelope, "other-grid", NOW)
    assert info.value.code is ErrorCode.WRONG_GRID
    with pytest.raises(ProtocolError) as info:
        check_freshness(envelope, "demo", NOW + timedelta(minutes=6))
    assert info.value.code is ErrorCode.STALE_TIMESTAMP
    check_freshness(envelope, "demo", NOW + timedelta(minutes=4))


def test_orders_need_something_to_do(keys: KeyPair) -> None:
    payload = sign(keys, "demo", 1, Orders(INTERVAL, cancel=("x",)), ts=NOW)["payload"]
    payload["cancel"] = []
    assert refusal(sign_raw(keys, payload)).field == "payload.place"


def test_error_wire_round_trip() -> None:
    err = ProtocolError(ErrorCode.REPLAY, "seq 3 is not above 7", "payload.seq")
    back = ProtocolError.from_wire(err.to_wire(), 409)
    assert (back.code, back.field, back.message) == (err.code, err.field, err.message)
    assert ProtocolError.from_wire({"nope": 1}, 500).code is ErrorCode.MALFORMED


def test_error_details_round_trip_and_stay_optional() -> None:
    plain = ProtocolError(ErrorCode.NOT_FOUND, "no such statement", "statement_id")
    assert "details" not in plain.to_wire()["error"]
    replay = ProtocolError(ErrorCode.REPLAY, "old seq", "payload.seq", {"last_seq": 42})
    wire = replay.to_wire()
    assert wire["error"]["details"] == {"last_seq": 42}
    back = ProtocolError.from_wire(wire, 409)
    assert (back.code, back.field, back.details) == (
        ErrorCode.REPLAY,
        "payload.seq",
        {"last_seq": 42},
    )
    # Bodies from grids that never send details still parse.
    assert ProtocolError.from_wire(plain.to_wire()).details is None


def test_error_with_a_code_from_a_newer_grid_keeps_its_words() -> None:
    """A code this client does not know: MALFORMED, but the grid's code, field and message stay.

    The household then sets the named reading aside under that code (a
    repair issue with the generic text), instead of retrying it forever.
    """
    wire = {
        "error": {
            "code": "source_not_approved",
            "field": "payload.readings[2].energy_wh",
            "message": "the operator has not approved this source yet",
        }
    }
    err = ProtocolError.from_wire(wire, 422)
    assert err.code is ErrorCode.MALFORMED
    assert err.wire_code == "source_not_approved"
    assert err.field == "payload.readings[2].energy_wh"
    assert err.message == "the operator has not approved this source yet"
    known = ProtocolError.from_wire(ProtocolError(ErrorCode.WINDOW_CLOSED, "late").to_wire(), 409)
    assert known.wire_code == "window_closed"


@pytest.mark.parametrize("value", ["a", "A.b_c:d-e", "9", "x" * 64])
def test_an_id_of_the_allowed_characters_is_accepted(value: str) -> None:
    assert check_id(value, "asset") == value


@pytest.mark.parametrize(
    "value",
    ["", ".a", "-a", "a b", "a\n", "é", "a\u0661", "\uff11", "x" * 65, 7],
    ids=[
        "empty",
        "dot-first",
        "dash-first",
        "space",
        "newline",
        "accent",
        "arabic-digit",
        "fullwidth-digit",
        "too-long",
        "not-a-string",
    ],
)
def test_an_id_outside_the_rule_is_refused(value: object) -> None:
    with pytest.raises(ProtocolError) as info:
        check_id(value, "asset")
    assert info.value.code is ErrorCode.INVALID_FIELD

"""Envelopes open one way everywhere: at intake, in ``audit verify``, for anyone later."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from grid_server.domain.audit_envelopes import check_envelopes
from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.protocol import (
    ErrorCode,
    Join,
    ProtocolError,
    Reading,
    Readings,
    canonical_json,
    open_envelope,
    parse_envelope,
    sign,
)

T = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _either(fn: Any, value: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(value)
    except ProtocolError as exc:
        return "error", exc.code


def _reference(value: Any) -> bytes:
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise ProtocolError(ErrorCode.MALFORMED, str(exc)) from exc


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_canonical_json_is_rfc_8785(payload: dict[str, Any]) -> None:
    assert _either(canonical_json, payload) == _either(_reference, payload)


@pytest.mark.parametrize(
    "value",
    [
        {"n": 999_999_999_999_999},  # 15 digits: the fast path
        {"n": 9_999_999_999_999_999},  # 16 digits: RFC 8785 writes it alike, slow path
        {"n": 2**53 + 1},  # beyond what a double keeps: RFC 8785 refuses it
        {"f": 1.0},  # RFC 8785 writes 1
        {"f": 1e-7},
        {"s": "é"},  # non-ASCII
        {"s": 'quote " and \\ backslash'},
        {"s": "line\nbreak"},
        {"nested": [{"b": 1, "a": [2, 3]}]},
        {"time": "2026-01-05T10:47:01.000Z", "f": 1.5},  # a time is no number: fast
        {"s": "a,1.5", "a": [1.5]},
        {"ζ": 1, "z": 2},  # key order by UTF-16 code units
        [1, "two", None, True],
        [9_999_999_999_999_999, -2.5],  # numbers right after "[" and ","
    ],
)
def test_canonical_json_boundaries(value: Any) -> None:
    assert _either(canonical_json, value) == _either(_reference, value)


def test_canonical_json_refuses_what_is_not_json() -> None:
    for value in ({"t": T}, {1: "int key"}, {"x": object()}):
        with pytest.raises(ProtocolError):
            canonical_json(value)


def _raw(envelope: dict[str, Any]) -> bytes:
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()


def test_stored_envelopes_open_like_fresh_ones() -> None:
    keys, other = KeyPair.generate(), KeyPair.generate()
    good = sign(keys, "g", 7, Readings((Reading(T, "pv", 5), Reading(T, "main", 6))), ts=T)
    unicode = sign(keys, "g", 9, Join("ABCD-EFGH", 'Zoë Müller "Z"'), ts=T)
    forged = json.loads(json.dumps(good))
    forged["payload"]["readings"][0]["energy_wh"] = 6
    stolen = json.loads(json.dumps(good))
    stolen["public_key"] = other.public_key_b64
    assert parse_envelope(_raw(good)).payload == open_envelope(good).payload
    assert parse_envelope(_raw(unicode)).payload == open_envelope(unicode).payload
    problems = check_envelopes("g", [(1, _raw(good)), (2, _raw(forged)), (3, _raw(stolen))])
    assert [seq for seq, _ in problems] == [2, 3]
    assert problems[0][1].startswith("bad_signature")
    assert check_envelopes("other-grid", [(1, _raw(good))])[0][1].startswith("the envelope is for")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[1, 2]", "envelope: must be a JSON object"),
        (b"{", "body: is not JSON"),
        (b"\xff\xfe{}", "body: is not UTF-8"),
        (b'{"payload": NaN}', "body: NaN is not JSON"),
        (b'{"a": 1, "a": 2}', "body: the object key 'a' appears twice"),
        (b'{"payload": {"x": [{"k": 1, "k": 1}]}}', "body: the object key 'k' appears twice"),
    ],
    ids=["array", "truncated", "not-utf8", "nan", "duplicate-top", "duplicate-nested"],
)
def test_bytes_that_are_not_strict_json_are_refused(raw: bytes, message: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_envelope(raw)
    assert info.value.code in (ErrorCode.MALFORMED, ErrorCode.INVALID_FIELD)
    assert info.value.message.startswith(message)


def test_a_signed_envelope_with_a_repeated_key_is_refused() -> None:
    keys = KeyPair.generate()
    good = _raw(sign(keys, "g", 7, Readings((Reading(T, "pv", 5),)), ts=T))
    # The same signed envelope with "seq" written twice, the last one as signed:
    # a parser that keeps the first would read another sequence number.
    doubled = good.replace(b'"seq":7', b'"seq":1,"seq":7')
    assert doubled != good
    with pytest.raises(ProtocolError, match="appears twice"):
        parse_envelope(doubled)

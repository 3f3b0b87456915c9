"""The verifier's fast path opens stored envelopes exactly like ``protocol.open_envelope``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grid_server.domain.audit_envelopes import check_envelopes, open_stored_envelope, signed_bytes
from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.protocol import (
    Join,
    ProtocolError,
    Reading,
    Readings,
    canonical_json,
    open_envelope,
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


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_fast_canonical_json_is_rfc_8785(payload: dict[str, Any]) -> None:
    assert _either(signed_bytes, payload) == _either(canonical_json, payload)


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
    invalid = sign(keys, "g", 8, Readings((Reading(T, "pv", 5), Reading(T, "pv", 6))), ts=T)
    for envelope in (good, forged, stolen, invalid, unicode):
        raw = _raw(envelope)
        assert _either(open_stored_envelope, raw) == _either(
            lambda r: open_envelope(orjson.loads(r)), raw
        ) or (
            _either(open_stored_envelope, raw)[0] == "error"
            and _either(lambda r: open_envelope(orjson.loads(r)), raw)[0] == "error"
        )
    assert open_stored_envelope(_raw(good)).payload == open_envelope(good).payload
    assert open_stored_envelope(_raw(unicode)).payload == open_envelope(unicode).payload
    problems = check_envelopes("g", [(1, _raw(good)), (2, _raw(forged)), (3, _raw(stolen))])
    assert [seq for seq, _ in problems] == [2, 3]
    assert problems[0][1].startswith("bad_signature")
    assert check_envelopes("other-grid", [(1, _raw(good))])[0][1].startswith("the envelope is for")
    with pytest.raises(ProtocolError):
        open_stored_envelope(b"[1, 2]")

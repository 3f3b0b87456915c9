"""Checking stored envelopes again (``p2p-grid audit verify``'s worker side).

:func:`check_envelopes` runs in worker processes (``audit verify`` uses both
cores): each stored envelope is opened exactly as the grid opened it at
intake (:func:`p2p_energy_client.protocol.parse_envelope`: strict JSON,
key, signature, payload rules) and must name this grid.
"""

from __future__ import annotations

from collections.abc import Sequence

from p2p_energy_client.protocol import ProtocolError, parse_envelope


def check_envelopes(grid: str, items: Sequence[tuple[int, bytes]]) -> list[tuple[int, str]]:
    """``(log seq, problem)`` for every stored envelope in ``items`` that does not check out."""
    problems: list[tuple[int, str]] = []
    for seq, raw in items:
        try:
            envelope = parse_envelope(raw)
        except ProtocolError as exc:
            problems.append((seq, f"{exc.code}: {exc.message}"))
            continue
        if envelope.payload.header.grid != grid:
            problems.append((seq, f"the envelope is for grid {envelope.payload.header.grid!r}"))
    return problems


__all__ = ["check_envelopes"]

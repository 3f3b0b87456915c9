"""Shared test values: a household's usual sources and meters."""

from __future__ import annotations

from p2p_energy_client.protocol import MeterDecl, SourceDecl, SourceKind

# A 4 kW rooftop array: 1,000 Wh per 15-minute interval at most.
PV = SourceDecl("pv", "Roof", SourceKind.SOLAR, 4_000)
# The household's main meter, rated 8 kW.
MAIN = MeterDecl("main", "Main meter", 8_000)

"""The household side of p2p_energy, free of Home Assistant.

Protocol, signing, the grid client, metering, trading strategy and ledger
access live here so that Home Assistant, the demo's simulated households and
the tests all run the same code. Outside Home Assistant this package is
importable as ``p2p_energy_client``; inside it, as
``custom_components.p2p_energy.client``. Only relative imports are used
within it for that reason.
"""

"""p2p_energy grid server: registry, metering, market, settlement, payments, audit log."""

__version__ = "0.1.0"

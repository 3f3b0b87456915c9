"""Ledgers behind one interface: the grid's embedded local ledger and IOTA Rebased."""

"""The ``p2p-grid`` command line."""

"""Alembic migrations of the grid database (run by ``p2p-grid migrate`` and at start)."""

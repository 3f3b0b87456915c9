"""Fixtures: a real grid server on loopback over SQLite and PostgreSQL, and a stand-in IOTA node."""

from __future__ import annotations

from tests.server.conftest import _loopback, database_url, grid, pg_pool
from tests.support.iota_node import iota_node

__all__ = ["_loopback", "database_url", "grid", "iota_node", "pg_pool"]

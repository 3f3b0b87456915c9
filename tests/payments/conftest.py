"""Fixtures: a real grid on loopback (SQLite and PostgreSQL) and a stand-in IOTA node."""

from __future__ import annotations

import logging

from tests.server.conftest import _loopback, database_url, pg_pool
from tests.support.iota_node import iota_node

logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)

__all__ = ["_loopback", "database_url", "iota_node", "pg_pool"]

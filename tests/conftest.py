"""Shared fixtures for every test package."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.client_alias import install as install_client_alias

# Before anything imports the integration: its client is p2p_energy_client's modules.
install_client_alias()

# The shared fixtures (a grid on loopback, SQLite and PostgreSQL databases).
from tests.support.fixtures import (  # noqa: E402
    _loopback,
    database_url,
    grid,
    pg_pool,
    postgres_url,
)

__all__ = ["_loopback", "database_url", "grid", "pg_pool", "postgres_url"]

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def iota_vectors() -> dict[str, Any]:
    """Public IOTA Rebased test vectors (copied from the IOTA SDKs' own tests)."""
    return json.loads((DATA / "iota_rebased_vectors.json").read_text())

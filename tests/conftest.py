"""Shared fixtures for every test package."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.client_alias import install as install_client_alias

# Before anything imports the integration: its client is p2p_energy_client's modules.
install_client_alias()

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def iota_vectors() -> dict[str, Any]:
    """Public IOTA Rebased test vectors (copied from the IOTA SDKs' own tests)."""
    return json.loads((DATA / "iota_rebased_vectors.json").read_text())

"""Fixtures for the IOTA Rebased ledger tests: a stand-in node and a ledger talking to it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.ledger.iota import IotaConfig, IotaLedger
from tests.support.iota_node import FAST, StandInIotaNode, iota_node

__all__ = ["iota_node"]  # the stand-in node fixture, shared with other test packages


@pytest.fixture
async def ledger(iota_node: StandInIotaNode) -> AsyncIterator[IotaLedger]:
    async with IotaLedger(IotaConfig(url=iota_node.url, **FAST)) as ledger:
        yield ledger


@pytest.fixture
def alice() -> KeyPair:
    return KeyPair(bytes(range(32)))


@pytest.fixture
def bob() -> KeyPair:
    return KeyPair(bytes(range(1, 33)))

"""The client is loaded once per process, under either of its two names."""

from __future__ import annotations

import importlib

import pytest

import custom_components.p2p_energy.client.protocol as via_integration
import p2p_energy_client.protocol as via_package


@pytest.mark.parametrize(
    "module",
    ["protocol", "models", "grid_client", "receipts", "units", "ledger.local", "ledger.base"],
)
def test_both_names_are_one_module(module: str) -> None:
    a = importlib.import_module(f"custom_components.p2p_energy.client.{module}")
    b = importlib.import_module(f"p2p_energy_client.{module}")
    assert a is b


def test_an_exception_raised_under_one_name_is_caught_under_the_other() -> None:
    with pytest.raises(via_package.ProtocolError):
        raise via_integration.ProtocolError(via_integration.ErrorCode.MALFORMED, "x")

"""Fixtures: the shared grid fixtures (tests/conftest.py) and a stand-in IOTA node."""

from __future__ import annotations

from tests.support.iota_node import iota_node

__all__ = ["iota_node"]

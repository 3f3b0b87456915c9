"""Fixtures: each test runs ``p2p-grid`` as an operator would, in a folder of its own.

Nothing of the machine leaks in: no ``P2P_*`` variables, ``XDG_CONFIG_HOME``
and the system config location point into the test's folder, and the working
directory is an empty folder the test can check stays empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

import grid_server.config


@dataclass(frozen=True)
class Places:
    """The test's folders: where the operator stands, and the default config locations."""

    cwd: Path
    user_config: Path  # $XDG_CONFIG_HOME/p2p-grid/grid.toml
    system_config: Path  # stands in for /etc/p2p-grid/grid.toml
    root: Path


@pytest.fixture(autouse=True)
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Places:
    for name in ("CONFIG", "DATABASE_URL", "LEDGER_KEY", "LEDGER_KEY_FILE", "OPERATOR_TOKEN"):
        monkeypatch.delenv(f"P2P_{name}", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    system = tmp_path / "etc" / "p2p-grid" / "grid.toml"
    monkeypatch.setattr(grid_server.config, "SYSTEM_CONFIG", system)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return Places(cwd, tmp_path / "xdg" / "p2p-grid" / "grid.toml", system, tmp_path)


__all__ = ["places"]

"""Runtime data of a p2p_energy config entry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from homeassistant.config_entries import ConfigEntry

from .client.grid_client import GridClient
from .client.household import Household
from .client.models import GridInfo

if TYPE_CHECKING:
    from .coordinator import P2PCoordinator

type P2PConfigEntry = ConfigEntry[P2PData]


@dataclass(slots=True)
class P2PData:
    """What a loaded membership holds: the grid client, the household, the coordinator."""

    client: GridClient
    grid: GridInfo
    household: Household
    coordinator: P2PCoordinator

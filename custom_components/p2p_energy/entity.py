"""Base entities: one device per membership, one per source or consumer meter."""

from __future__ import annotations

from homeassistant.config_entries import ConfigSubentry
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .assets import asset_id
from .const import DOMAIN, SUBENTRY_SOURCE
from .coordinator import P2PCoordinator


def membership_device(coordinator: P2PCoordinator) -> DeviceInfo:
    """The membership: its serial number is the wallet address households fund.

    No ``configuration_url``: the grid's web pages are the operator's
    dashboard (a login a household does not have), nothing to visit.
    """
    entry = coordinator.config_entry
    grid = coordinator.household.grid
    return DeviceInfo(
        identifiers={(DOMAIN, str(entry.unique_id))},
        name=entry.title,
        manufacturer="p2p_energy",
        model=f"Membership of {grid.name}",
        serial_number=coordinator.client.address,
        entry_type=DeviceEntryType.SERVICE,
    )


def asset_device(coordinator: P2PCoordinator, subentry: ConfigSubentry) -> DeviceInfo:
    entry = coordinator.config_entry
    kind = "Source" if subentry.subentry_type == SUBENTRY_SOURCE else "Consumer meter"
    return DeviceInfo(
        identifiers={(DOMAIN, f"{entry.unique_id}_{subentry.subentry_id}")},
        name=subentry.title,
        manufacturer="p2p_energy",
        model=kind,
    )


@callback
def async_link_devices(hass: HomeAssistant, coordinator: P2PCoordinator) -> None:
    """Register the membership's device and each asset's, linked by ``via_device_id``.

    The ``via_device`` tuple in a DeviceInfo is deprecated (Home Assistant
    2026.8), and ``via_device_id`` is not a DeviceInfo key on 2025.4: the
    devices are made here, before the platforms add their entities, and the
    link set through the registry, which both releases accept. The
    entities' DeviceInfo then finds the devices as they are and keeps the link.
    """
    entry = coordinator.config_entry
    registry = dr.async_get(hass)
    hub = registry.async_get_or_create(
        config_entry_id=entry.entry_id, **membership_device(coordinator)
    )
    for subentry in entry.subentries.values():
        device = registry.async_get_or_create(
            config_entry_id=entry.entry_id,
            config_subentry_id=subentry.subentry_id,
            **asset_device(coordinator, subentry),
        )
        if device.via_device_id != hub.id:
            registry.async_update_device(device.id, via_device_id=hub.id)


class P2PEntity(CoordinatorEntity[P2PCoordinator]):
    """An entity of the membership device."""

    _attr_has_entity_name = True

    def __init__(self, coordinator: P2PCoordinator, key: str) -> None:
        super().__init__(coordinator)
        self._attr_unique_id = f"{coordinator.config_entry.unique_id}_{key}"
        self._attr_device_info = membership_device(coordinator)


class P2PAssetEntity(CoordinatorEntity[P2PCoordinator]):
    """An entity of one source's or consumer meter's device."""

    _attr_has_entity_name = True

    def __init__(self, coordinator: P2PCoordinator, subentry: ConfigSubentry, key: str) -> None:
        super().__init__(coordinator)
        entry = coordinator.config_entry
        self.asset_id = asset_id(subentry)
        self._attr_unique_id = f"{entry.unique_id}_{subentry.subentry_id}_{key}"
        # Linked to the membership's device by async_link_devices.
        self._attr_device_info = asset_device(coordinator, subentry)

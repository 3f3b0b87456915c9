"""Home Assistant's reports of deprecated use by our integration fail the test.

Each case makes Home Assistant report a use the way it does for real code
(the calling frame is placed in our integration with the harness's own
``mock_integration_frame``), then asks the autouse ``deprecation_reports``
fixture's checker, which fails the test unless the report is taken back.
"""

from __future__ import annotations

from collections.abc import Callable
from unittest.mock import Mock

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.helpers import frame
from homeassistant.helpers.deprecation import deprecated_function
from homeassistant.loader import async_get_integration

from custom_components.p2p_energy.const import DOMAIN
from tests.support.home_assistant import DeprecationReports

OUR_FRAME = pytest.mark.parametrize("integration_frame_path", [f"custom_components/{DOMAIN}"])


def report_given_our_domain() -> None:
    # As config_entries reports, from 2026.6, a reauth or reconfigure flow
    # that reloads an entry which also has an update listener.
    frame.report_usage(
        "has an update listener and should use it for scheduling a reload",
        core_behavior=frame.ReportBehavior.LOG,
        breaks_in_ha_version="2026.12.0",
        integration_domain=DOMAIN,
    )


def report_found_by_frame() -> None:
    # As the device registry reports a device_info whose via_device does not exist.
    frame.report_usage(
        "calls `device_registry.async_get_or_create` referencing a non existing `via_device`",
        core_behavior=frame.ReportBehavior.LOG,
        breaks_in_ha_version="2025.12.0",
    )


@deprecated_function("new_helper", breaks_in_ha_version="2099.1")
def old_helper() -> None:
    """A deprecated helper, as Home Assistant marks its own."""


@OUR_FRAME
@pytest.mark.parametrize(
    ("provoke", "expected"),
    [
        (report_given_our_domain, f"custom integration '{DOMAIN}' has an update listener"),
        (report_found_by_frame, f"custom integration '{DOMAIN}' calls `device_registry"),
        (old_helper, f"old_helper was called from {DOMAIN}"),
    ],
    ids=["report_usage-domain", "report_usage-frame", "deprecated_function"],
)
async def test_a_report_naming_us_fails_the_test(
    hass: HomeAssistant,
    mock_integration_frame: Mock,
    deprecation_reports: DeprecationReports,
    provoke: Callable[[], None],
    expected: str,
) -> None:
    await async_get_integration(hass, DOMAIN)  # loaded, as whenever our code runs
    provoke()

    with pytest.raises(pytest.fail.Exception, match="reported deprecated use by p2p_energy") as e:
        deprecation_reports.check()
    assert expected in str(e.value)
    assert len(deprecation_reports.found) == 1
    deprecation_reports.found.clear()  # taken back: this test passes


@OUR_FRAME
@pytest.mark.parametrize("run", ["first", "second"])
async def test_each_test_sees_its_own_reports(
    hass: HomeAssistant,
    mock_integration_frame: Mock,
    deprecation_reports: DeprecationReports,
    run: str,
) -> None:
    """Home Assistant reports a call site once per process; the second run
    sees the report only because the fixture starts each test afresh."""
    report_found_by_frame()
    assert len(deprecation_reports.found) == 1
    deprecation_reports.found.clear()


@pytest.mark.parametrize("integration_frame_path", ["custom_components/other_integration"])
async def test_a_report_naming_another_integration_passes(
    hass: HomeAssistant, mock_integration_frame: Mock, deprecation_reports: DeprecationReports
) -> None:
    await async_get_integration(hass, DOMAIN)
    report_found_by_frame()
    old_helper()
    assert deprecation_reports.found == []

"""The one retry rule: waits double from the first up to the longest."""

from __future__ import annotations

import pytest

from p2p_energy_client.backoff import retry_delay


@pytest.mark.parametrize(
    ("failures", "wait"),
    [(0, 0.0), (1, 5.0), (2, 10.0), (3, 20.0), (8, 640.0), (9, 900.0), (10_000, 900.0)],
)
def test_waits_double_up_to_the_longest(failures: int, wait: float) -> None:
    assert retry_delay(failures, first=5.0, longest=900.0) == wait

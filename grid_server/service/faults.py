"""Test-only fault injection: halt the process at a named point so a test can ``kill -9`` it there.

Off unless the settings ``test_faults`` and ``test_fault_dir``
(``P2P_TEST_FAULTS``, ``P2P_TEST_FAULT_DIR``) are set; never set them in
production. ``P2P_TEST_FAULTS`` is a comma-separated list of
``point[=key][@n]``:

========================  ==========================================================
``ingest.commit``         the writer applied a batch, before its commit (key
                          ``readings`` when the batch holds readings)
``cycle.clear``           an interval's clearing is written, before its commit (key:
                          the interval, ``2026-11-27T10:30:00Z``)
``cycle.settle``          an interval's settlement is written, before its commit (key:
                          the interval)
``payout.send``           a local-ledger payout is applied and recorded, before its commit
========================  ==========================================================

When a process reaches a point (with that key, for the ``n``-th time in this
process; the first by default) it claims the fault by creating
``<dir>/<point>`` exclusively, writes its pid there, and then waits forever
in the middle of whatever transaction it is in, until the test kills it.
A fault fires once across all processes (the file is the claim), so a
worker restarted with the same environment runs on.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path

_LOGGER = logging.getLogger(__name__)


@dataclass(slots=True)
class _Fault:
    point: str
    key: str | None
    nth: int
    seen: int = 0


class Faults:
    def __init__(self, spec: str | None, directory: Path | None) -> None:
        self.directory = directory
        self._faults: list[_Fault] = []
        if spec and directory is not None:
            for item in filter(None, (x.strip() for x in spec.split(","))):
                where, _, nth = item.partition("@")
                point, _, key = where.partition("=")
                self._faults.append(_Fault(point, key or None, int(nth or "1")))

    @property
    def armed(self) -> bool:
        return bool(self._faults)

    async def reach(self, point: str, key: str = "") -> None:
        """Halt here for good if a fault is set for this point (a no-op otherwise)."""
        if not self._faults:
            return
        for fault in self._faults:
            if fault.point != point or (fault.key is not None and fault.key != key):
                continue
            fault.seen += 1
            if fault.seen != fault.nth or not self._claim(point, key):
                continue
            _LOGGER.warning(
                "test fault %s (%s): halting for the test to kill this process", point, key
            )
            await asyncio.Event().wait()

    def _claim(self, point: str, key: str) -> bool:
        assert self.directory is not None
        try:
            fd = os.open(self.directory / point, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False  # fired already (in this or another process)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{os.getpid()} {key}\n")
        return True

"""A background task that repeats one step: the interval cycle's and the payout worker's loop.

After each pass the loop sleeps until it is woken (:meth:`BackgroundLoop.wake`:
new work arrived) or until ``delay()`` seconds have passed, whichever comes
first. A pass that fails is logged (on the owner's logger) and tried again on
the next round, so one bad pass never stops the grid's clearing or payouts.
A step that loops over due work checks :attr:`BackgroundLoop.stopping` between
items, so stopping the grid never starts another interval or payout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable


class BackgroundLoop:
    def __init__(
        self,
        name: str,
        step: Callable[[], Awaitable[object]],
        delay: Callable[[], float],
        *,
        failure: str,
        logger: logging.Logger,
    ) -> None:
        self.name = name
        self._step = step
        self._delay = delay
        self._failure = failure
        self._logger = logger
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.stopping = False

    def start(self) -> None:
        self.stopping = False
        self._task = asyncio.create_task(self._run(), name=self.name)

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        self.stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:
                self._logger.exception(self._failure)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._delay())

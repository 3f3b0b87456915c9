"""Objects that own connections and are used as ``async with`` blocks."""

from __future__ import annotations

from typing import Self


class AsyncCloseable:
    """Leaving the ``async with`` block closes the object, whatever happened in it."""

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

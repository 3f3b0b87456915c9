"""A lean HTTP/1.1 load generator for the benchmarks: pre-built requests, keep-alive sockets.

The generator must cost far less CPU than the server it measures (they share
a 2-core machine). aiohttp's client spends a few hundred microseconds per
request; this one writes pre-encoded request bytes to a keep-alive
connection and reads the answer's status line, headers and body, which costs
tens of microseconds. It speaks only what the benchmarks need: ``POST``
with a JSON body, answers with ``Content-Length``.

Ordering: a household's reports carry increasing sequence numbers, so one
must not overtake the previous one. :func:`post_all` sends report ``k`` of a
household only after its report ``k - 1`` was answered.

Two modes:

* closed loop (``rate=None``): ``connections`` senders, each sending its next
  report as soon as the previous answer arrived — the server's capacity;
* open loop (``rate=R``): report ``i`` is due at ``start + i / R``; the
  latency counts from when it was due, so time spent waiting for a free
  connection is included (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit


class HttpError(Exception):
    pass


@dataclass(slots=True)
class PostResults:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)
    sent: int = 0
    seconds: float = 0.0

    def record_error(self, status: int, text: str) -> None:
        self.errors += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if len(self.samples) < 3:
            self.samples.append(f"{status}: {text[:300]}")


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self._reader, self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def request(self, data: bytes) -> tuple[int, bytes]:
        """Send one pre-encoded request; retry once on a connection the server closed."""
        for attempt in (0, 1):
            reader, writer = await self._open()
            try:
                writer.write(data)
                head = await reader.readuntil(b"\r\n\r\n")
            except (ConnectionError, asyncio.IncompleteReadError):
                # An idle keep-alive connection closed by the server: resending a
                # signed envelope is safe (a duplicate gets the stored answer).
                self.close()
                if attempt:
                    raise
                continue
            status, length, close = _parse_head(head)
            body = await reader.readexactly(length) if length else b""
            if close:
                self.close()
            return status, body
        raise AssertionError("unreachable")


def _parse_head(head: bytes) -> tuple[int, int, bool]:
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split(b" ", 2)[1])
    except (IndexError, ValueError) as exc:
        raise HttpError(f"bad status line {lines[0]!r}") from exc
    length = 0
    close = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == b"content-length":
            length = int(value.strip())
        elif key == b"connection" and value.strip().lower() == b"close":
            close = True
        elif key == b"transfer-encoding":
            raise HttpError("chunked answers are not supported by the load generator")
    return status, length, close


def build_post(url: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    parts = urlsplit(url)
    host = parts.netloc
    lines = [
        f"POST {parts.path or '/'} HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def post_all(
    url: str,
    bodies: Sequence[bytes],
    owners: Sequence[int],
    *,
    connections: int,
    rate: float | None = None,
    seconds: float | None = None,
) -> PostResults:
    """POST ``bodies[i]`` (in order, by owner) until all are answered or ``seconds`` passed.

    ``owners[i]`` names the household that signed body ``i``; a household's
    bodies are sent one after another, each after the previous answer.
    Without ``rate`` each connection sends its next body as soon as the last
    is answered (closed loop); with it, body ``i`` is due ``i / rate`` seconds
    after the start (open loop), latency counted from when it was due.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(Connection(host, port))
    poster = _Poster([build_post(url, body) for body in bodies], owners, pool)
    started = time.perf_counter()
    deadline = started + seconds if seconds else None
    if rate is None:
        await poster.closed_loop(connections, deadline)
    else:
        await poster.open_loop(rate, connections, started, deadline)
    poster.results.seconds = time.perf_counter() - started
    while not pool.empty():
        with contextlib.suppress(Exception):
            pool.get_nowait().close()
    return poster.results


@dataclass
class _Poster:
    """Prepared requests sent over a pool of connections, one at a time per household."""

    requests: list[bytes]
    owners: Sequence[int]
    pool: asyncio.Queue[Connection]
    results: PostResults = field(default_factory=PostResults)
    # Each household's last request: the next waits for its answer (sequence numbers).
    last_sent: dict[int, asyncio.Future[None]] = field(default_factory=dict)

    async def send(self, i: int, due: float) -> None:
        owner = self.owners[i]
        previous = self.last_sent.get(owner)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.last_sent[owner] = done
        try:
            if previous is not None and not previous.done():
                await previous
            conn = await self.pool.get()
            try:
                status, answer = await conn.request(self.requests[i])
            except (OSError, asyncio.IncompleteReadError, HttpError) as exc:
                conn.close()
                self.results.record_error(0, repr(exc))
                return
            finally:
                self.pool.put_nowait(conn)
            if status == 200:
                self.results.latencies.append(time.perf_counter() - due)
            else:
                self.results.record_error(status, answer.decode(errors="replace"))
        finally:
            done.set_result(None)

    async def closed_loop(self, connections: int, deadline: float | None) -> None:
        index = iter(range(len(self.requests)))

        async def sender() -> None:
            for i in index:
                if deadline is not None and time.perf_counter() >= deadline:
                    return
                self.results.sent += 1
                await self.send(i, time.perf_counter())

        await asyncio.gather(*(sender() for _ in range(connections)))

    async def open_loop(
        self, rate: float, connections: int, started: float, deadline: float | None
    ) -> None:
        tasks: set[asyncio.Task[None]] = set()
        limit = asyncio.Semaphore(connections * 4)
        for i in range(len(self.requests)):
            due = started + i / rate
            if deadline is not None and due >= deadline:
                break
            delay = due - time.perf_counter()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            await limit.acquire()
            self.results.sent += 1
            task = asyncio.create_task(self.send(i, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            task.add_done_callback(lambda _t: limit.release())
        if tasks:
            await asyncio.gather(*tasks)


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


__all__ = ["PostResults", "build_post", "percentile", "post_all"]

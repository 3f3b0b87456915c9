"""What the load benchmarks share: a throwaway server, a scratch database, process figures.

* :func:`scratch_database` — a PostgreSQL URL is never written to: the
  benchmark creates a database beside it and drops it afterwards; without a
  URL it is SQLite in a temporary folder.
* :func:`grid_server_process` — ``p2p-grid serve`` in its own process on a
  free loopback port (the benchmark's own CPU stays out of it).
* :class:`ProcessTree` — CPU seconds and peak resident memory of a process
  and its children (uvicorn's workers), read from ``/proc`` (Linux); ``None``
  elsewhere.
* :func:`load_average` — the machine's 1-minute load average, printed next to
  every figure: on a shared machine a figure means little without it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def is_postgres(url: str | None) -> bool:
    return bool(url) and str(url).startswith(("postgres://", "postgresql"))


@contextlib.asynccontextmanager
async def scratch_database(url: str | None, folder: Path) -> AsyncIterator[str]:
    """A database URL to benchmark in: a fresh PostgreSQL database beside ``url``, or SQLite."""
    if not is_postgres(url):
        yield url or f"sqlite:///{folder}/grid.db"
        return
    assert url is not None
    name = f"p2p_bench_{secrets.token_hex(4)}"
    await pg_admin(url, f'CREATE DATABASE "{name}"')
    try:
        yield f"{url.rpartition('/')[0]}/{name}"
    finally:
        await pg_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def pg_admin(url: str, statement: str) -> None:
    import asyncpg  # noqa: PLC0415 - optional, PostgreSQL only

    base = url.replace("postgresql+asyncpg://", "postgresql://").replace(
        "postgres://", "postgresql://"
    )
    conn = await asyncpg.connect(base.rpartition("/")[0] + "/postgres")
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.contextmanager
def grid_server_process(
    folder: Path,
    database: str,
    token: str,
    *,
    workers: int = 1,
    config: str = '[grid]\nid = "bench-grid"\nname = "Benchmark grid"\n',
    env: dict[str, str] | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run ``p2p-grid serve`` on a free loopback port; yields its URL and process."""
    port = free_port()
    config_path = folder / "grid.toml"
    config_path.write_text(config)
    environment = {
        **os.environ,
        "P2P_OPERATOR_TOKEN": token,
        "P2P_LOG_LEVEL": "WARNING",
        # The benchmark floods from one address, faster than any household
        # sends: no per-address or per-key throttling, and the first envelopes
        # of thousands of new members at once (each a membership lookup that
        # holds one of the address's refusal tokens meanwhile) are no attack.
        "P2P_RATE_PER_ADDRESS": "1000000",
        "P2P_BURST_PER_ADDRESS": "1000000",
        "P2P_RATE_PER_KEY": "1000000",
        "P2P_BURST_PER_KEY": "1000000",
        "P2P_REFUSALS_PER_ADDRESS": "1000000",
        "P2P_REFUSAL_BURST_PER_ADDRESS": "1000000",
        **(env or {}),
    }
    command = [
        sys.executable,
        "-m",
        "grid_server.cli.main",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--database-url",
        database,
        "--config",
        str(config_path),
        "--workers",
        str(workers),
    ]
    process = subprocess.Popen(command, env=environment)  # noqa: S603 - our own server
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True, slots=True)
class TreeSample:
    cpu_seconds: float
    peak_rss_bytes: int  # the largest peak of one process
    total_peak_rss_bytes: int  # the sum of the processes' peaks
    processes: int
    at: float


class ProcessTree:
    """CPU time and peak RSS of a process and its descendants (Linux ``/proc``)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def sample(self) -> TreeSample | None:
        try:
            pids = self._tree()
            cpu = 0.0
            peaks: list[int] = []
            for pid in pids:
                with contextlib.suppress(OSError, ValueError, IndexError):
                    cpu += _cpu_seconds(pid)
                    peaks.append(_peak_rss(pid))
        except OSError:
            return None
        if not peaks:
            return None
        return TreeSample(cpu, max(peaks), sum(peaks), len(peaks), time.perf_counter())

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                ppid = int(_stat_fields(int(entry))[1])
                children.setdefault(ppid, []).append(int(entry))
        found = [self.pid]
        i = 0
        while i < len(found):
            found.extend(children.get(found[i], ()))
            i += 1
        return found


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces; everything after ")" splits cleanly.
    return text.rpartition(")")[2].split()


def _cpu_seconds(pid: int) -> float:
    fields = _stat_fields(pid)
    # utime and stime are fields 14 and 15 of stat; 12 and 13 after the name.
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


__all__ = [
    "ProcessTree",
    "TreeSample",
    "free_port",
    "grid_server_process",
    "is_postgres",
    "load_average",
    "own_cpu_seconds",
    "pg_admin",
    "scratch_database",
]

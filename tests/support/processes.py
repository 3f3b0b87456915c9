"""Real ``p2p-grid serve`` processes for production-shape tests.

* :class:`SharedClock`: the grid clock of every server process and of the
  test's households, a file the test rewrites (the server's test-only
  ``P2P_TEST_CLOCK_FILE``, :class:`grid_server.domain.clock.FileClock`).
* :class:`GridProcess`: one ``p2p-grid serve`` (``--workers N`` or one
  process) in its own process group on a loopback port; :meth:`stop` ends
  the group (SIGTERM, then SIGKILL) and reaps it, so no server outlives its
  test.
* :func:`fault_pid`: waits for a test-only fault point
  (``P2P_TEST_FAULTS``, :mod:`grid_server.service.faults`) to be reached and
  returns the pid of the process that halted there, for the test to kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.sql import Executable

from grid_server.cli.main import main as p2p_grid
from grid_server.storage.db import Database
from p2p_energy_client.units import format_utc

P2P_GRID = str(Path(sys.executable).with_name("p2p-grid"))
OPERATOR_TOKEN = "production-test-operator-token"
# The grid's ledger key: the same in every process and after every restart.
LEDGER_KEY = "11" * 32
# Process start-up (imports, migrations) on a loaded 2-core machine.
START_TIMEOUT = 120.0


class SharedClock:
    """Grid time in a file: the servers read it, the test moves it."""

    def __init__(self, path: Path, start: datetime) -> None:
        self.path = path
        self._now = start
        self.set(start)

    def now(self) -> datetime:
        return self._now

    def set(self, moment: datetime) -> None:
        self._now = moment.astimezone(UTC)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(format_utc(self._now) + "\n")
        os.replace(tmp, self.path)

    def advance(self, **delta: float) -> datetime:
        self.set(self._now + timedelta(**delta))
        return self._now


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def grid_toml(path: Path, grid_id: str = "prod-grid", **ledger: Any) -> Path:
    """A grid config: 15-minute intervals, a 10-minute settlement window, hourly statements."""
    lines = [
        "[grid]",
        f'id = "{grid_id}"',
        "interval_minutes = 15",
        "gate_closure_seconds = 300",
        "settlement_window_seconds = 600",
        "settlement_period_seconds = 3600",
        "[grid.ledger]",
        'payout_policy = "float"',
        "payout_threshold_micro = 1000",
        "payout_interval_seconds = 0.5",
    ]
    lines += [f"{k} = {v!r}" for k, v in ledger.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


class GridProcess:
    """``p2p-grid serve`` on 127.0.0.1 in a process group of its own."""

    def __init__(
        self,
        name: str,
        database_url: str,
        directory: Path,
        *,
        config: Path,
        clock: SharedClock | None,
        workers: int = 1,
        port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.database_url = database_url
        self.directory = directory
        self.workers = workers
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = directory / f"{name}.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("P2P_")}
        self.env.update(
            {
                "P2P_OPERATOR_TOKEN": OPERATOR_TOKEN,
                "P2P_LEDGER_KEY": LEDGER_KEY,
                "P2P_LOG_LEVEL": "INFO",
                # The scenario's households send fast; floods are tested elsewhere.
                "P2P_RATE_PER_KEY": "1000",
                "P2P_BURST_PER_KEY": "1000",
            }
        )
        if clock is not None:  # None: the real clock, as a grid in production runs
            self.env["P2P_TEST_CLOCK_FILE"] = str(clock.path)
        self.env.update(env or {})
        self.args = [
            P2P_GRID,
            "serve",
            "--config",
            str(config),
            "--database-url",
            database_url,
            "--port",
            str(self.port),
            "--workers",
            str(workers),
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.args,
                cwd=self.directory,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1

    def startups(self) -> int:
        """How many worker processes finished their start-up so far (from the log)."""
        if not self.log.exists():
            return 0
        return self.log.read_text(errors="replace").count("Application startup complete")

    async def ready(self, workers: int | None = None, within: float = START_TIMEOUT) -> None:
        """Wait until ``workers`` more worker start-ups are logged and health answers ok."""
        want = self.startups_before + (workers or self.workers)
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as http:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"{self.name} exited: {self.tail()}")
                if self.startups() >= want:
                    with contextlib.suppress(httpx.HTTPError):
                        if (await http.get("/api/v1/health")).status_code == 200:
                            return
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self.name} did not start: {self.tail()}")
                await asyncio.sleep(0.1)

    async def run(self) -> None:
        self.startups_before = self.startups()
        self.start()
        await self.ready()

    startups_before = 0

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def worker_pids(self) -> list[int]:
        """The worker processes of ``--workers N`` (the children of the serve process)."""
        assert self.proc is not None
        pid = self.proc.pid
        children: list[int] = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                children += [int(c) for c in (task / "children").read_text().split()]
        return children

    def kill_group(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    async def stop(self, within: float = 20.0) -> None:
        """SIGTERM the group, SIGKILL it after ``within`` seconds; reap the process."""
        if self.proc is not None:
            await stop_group(self.proc, within)


async def stop_group(proc: subprocess.Popen[bytes], within: float) -> None:
    """SIGTERM ``proc``'s process group, SIGKILL what is left after ``within`` seconds
    (a worker halted at a fault point, say), and reap the process."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(proc.wait, within)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def kill(pid: int) -> None:
    """kill -9 one process (a worker, or the single serve process)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


async def fault_pid(directory: Path, point: str, *, within: float = 90.0) -> int:
    """The pid of the process halted at ``point`` (waits until one is)."""
    marker = directory / point
    deadline = time.monotonic() + within
    while True:
        with contextlib.suppress(OSError):
            text_ = marker.read_text()
            if text_.endswith("\n"):
                return int(text_.split()[0])
        if time.monotonic() > deadline:
            raise AssertionError(f"no process reached the fault point {point}")
        await asyncio.sleep(0.05)


def gone(pid: int) -> bool:
    """True once ``pid`` is dead (a zombie counts: it holds no locks and no sockets)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


async def wait_gone(pid: int, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not gone(pid):
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} is still alive")
        await asyncio.sleep(0.02)


class Operator:
    """The operator API over HTTP (token from :data:`OPERATOR_TOKEN`)."""

    def __init__(self, url: str) -> None:
        self.http = httpx.AsyncClient(
            base_url=url, timeout=30, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        )

    async def invite(self, **body: Any) -> str:
        response = await self.http.post("/api/v1/operator/invitations", json=body)
        assert response.status_code == 201, response.text
        code: str = response.json()["code"]
        return code

    async def mint(self, address: str, amount: int) -> None:
        response = await self.http.post(
            "/api/v1/operator/ledger/mint", json={"address": address, "amount": amount}
        )
        assert response.status_code == 201, response.text

    async def grid_address(self) -> str:
        address: str = (await self.http.get("/api/v1/grid")).json()["ledger"]["address"]
        return address

    async def close(self) -> None:
        await self.http.aclose()


async def eventually(
    db: Database, query: Executable, expected: Any, *, within: float = 90.0
) -> None:
    """Poll ``query`` (one scalar) until it returns ``expected``."""
    deadline = time.monotonic() + within
    while True:
        async with db.read() as conn:
            value = await conn.scalar(query)
        if value == expected:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{query}: {value!r}, expected {expected!r}")
        await asyncio.sleep(0.1)


async def rows(db: Database, query: Executable) -> list[Any]:
    async with db.read() as conn:
        return list((await conn.execute(query)).all())


async def audit_verify(database_url: str, *extra: str) -> int:
    """``p2p-grid audit verify`` (its command-line entry point, in a thread)."""
    argv: Sequence[str] = ("audit", "verify", "--database-url", database_url, "--workers", "1")
    return await asyncio.to_thread(p2p_grid, [*argv, *extra])

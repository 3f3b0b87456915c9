"""Operator and dashboard credentials (finding 8).

A non-ASCII bearer answered 503 with a traceback; bearer guessing was not
limited; logout left the dashboard cookie valid; the operator token went into
the server's log; the token file's mode was not checked; the ledger key's
temporary file was written through whatever lay at its predictable name; the
database was created world-readable; a Host header became a redirect target;
``/docs`` loaded scripts from a CDN.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path

import httpx
import pytest

from grid_server.cli.serve import TOKEN_FILE, ensure_operator_token
from grid_server.config import Settings
from grid_server.service.ledger_key import KEY_FILE, LedgerKeyError, load_grid_key
from grid_server.storage.files import PrivateFileError
from tests.security.conftest import http_from, stored
from tests.support.grid_server import OPERATOR_TOKEN, RunningGrid, run_grid_server

OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


@pytest.mark.parametrize(
    "path", ["/api/v1/operator/participants", "/api/v1/me", "/dashboard/api/overview"]
)
@pytest.mark.parametrize("token", ["\u00e9t\u00e9", "\u2603", "caf\u00e9" + OPERATOR_TOKEN])
async def test_a_non_ascii_bearer_is_a_clean_401(
    hardened: RunningGrid, caplog: pytest.LogCaptureFixture, path: str, token: str
) -> None:
    header = b"Bearer " + token.encode("utf-8")
    with caplog.at_level(logging.ERROR):
        async with http_from(hardened) as http:
            answer = await http.get(path, headers={"Authorization": header})
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthenticated"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/v1/operator/participants"), ("GET", "/dashboard/api/overview")],
)
async def test_guessing_the_operator_token_is_limited(
    hardened: RunningGrid, method: str, path: str
) -> None:
    allowed = hardened.grid.settings.auth_failures_per_hour
    async with http_from(hardened) as http:
        codes = [
            (
                await http.request(method, path, headers={"Authorization": f"Bearer guess{i}"})
            ).status_code
            for i in range(allowed + 1)
        ]
        assert codes == [401] * allowed + [429]
        # Even the right token waits now: the address guessed too often.
        assert (await http.request(method, path, headers=OPERATOR)).status_code == 429
    # Another address is not affected.
    async with http_from(hardened, "127.0.0.1") as http:
        assert (await http.request(method, path, headers=OPERATOR)).status_code == 200


async def test_logging_out_revokes_the_dashboard_session(hardened: RunningGrid) -> None:
    async with http_from(hardened) as http:
        login = await http.post("/dashboard/api/session", json={"token": OPERATOR_TOKEN})
        assert login.status_code == 200
        cookie = http.cookies["p2p_dashboard"]
        assert (await http.get("/dashboard/api/overview")).status_code == 200
        assert (await http.delete("/dashboard/api/session")).status_code == 200
    async with http_from(hardened, cookies={"p2p_dashboard": cookie}) as copy:
        assert (await copy.get("/dashboard/api/overview")).status_code == 401
    assert (await stored(hardened))["dashboard_sessions"] == 0


@pytest.mark.parametrize("path", ["/api/v1/grid/", "/api/v1/operator/participants/", "/me/"])
async def test_no_redirect_is_built_from_the_host_header(hardened: RunningGrid, path: str) -> None:
    async with http_from(hardened) as http:
        answer = await http.get(path, headers={**OPERATOR, "Host": "evil.example"})
    assert "location" not in answer.headers
    assert answer.status_code == 404


async def test_api_docs_load_nothing_from_outside(hardened: RunningGrid) -> None:
    async with http_from(hardened) as http:
        for page in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            assert (await http.get(page)).status_code == 404
        assert (await http.get("/openapi.json")).status_code == 200


async def test_api_docs_when_on_are_served_from_the_grid_itself(database_url: str) -> None:
    """``api_docs = true``: /docs is Swagger UI from the grid's own files, no CDN, no ReDoc."""
    async with (
        run_grid_server(database_url, default_limits=True, api_docs=True) as grid,
        http_from(grid) as http,
    ):
        page = await http.get("/docs")
        assert page.status_code == 200
        assert "swagger-ui" in page.text
        linked = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", page.text)
        assert linked and all(link.startswith("/") and not link.startswith("//") for link in linked)
        for link in linked:
            answer = await http.get(link)
            assert answer.status_code == 200, link
        script = await http.get("/docs/static/swagger-ui-bundle.js")
        assert script.status_code == 200 and len(script.content) > 100_000
        assert (await http.get("/redoc")).status_code == 404


# --- files -------------------------------------------------------------------------------


def _modes(folder: Path, prefix: str) -> dict[str, int]:
    found = [p for p in folder.iterdir() if p.name.startswith(prefix)]
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in found}


async def test_the_database_file_is_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        async with run_grid_server(f"sqlite:///{tmp_path / 'grid.db'}"):
            while_running = _modes(tmp_path, "grid.db")
    finally:
        os.umask(old)
    assert "grid.db" in while_running
    assert set(while_running.values()) == {0o600}, while_running  # with -wal and -shm


def test_the_operator_token_is_never_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'grid.db'}")
    token = ensure_operator_token(settings).operator_token
    assert token
    out = capsys.readouterr()
    assert token not in out.err and token not in out.out
    assert str(tmp_path / TOKEN_FILE) in out.err  # where it is, instead
    assert stat.S_IMODE((tmp_path / TOKEN_FILE).stat().st_mode) == 0o600
    assert ensure_operator_token(settings).operator_token == token  # read back


@pytest.mark.parametrize("unsafe", ["readable", "symlink"])
def test_an_unsafe_token_file_is_refused(tmp_path: Path, unsafe: str) -> None:
    path = tmp_path / TOKEN_FILE
    if unsafe == "readable":
        path.write_text("a-token\n")
        path.chmod(0o644)
    else:
        target = tmp_path / "elsewhere"
        target.write_text("a-token\n")
        target.chmod(0o600)
        path.symlink_to(target)
    with pytest.raises(PrivateFileError, match=str(path)):
        ensure_operator_token(Settings(database_url=f"sqlite:///{tmp_path / 'grid.db'}"))


def test_the_ledger_key_is_not_written_through_a_planted_link(tmp_path: Path) -> None:
    """A symlink at the temporary file's name used to be written through (O_TRUNC)."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    planted = tmp_path / f".{KEY_FILE}.{os.getpid()}.tmp"
    planted.symlink_to(victim)
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'grid.db'}")
    keys, where = load_grid_key(settings)
    assert victim.read_text() == "precious\n"
    assert where == str(tmp_path / KEY_FILE)
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    assert load_grid_key(settings)[0].address == keys.address


def test_a_ledger_key_file_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "key-elsewhere"
    target.write_text("11" * 32 + "\n")
    target.chmod(0o600)
    (tmp_path / KEY_FILE).symlink_to(target)
    with pytest.raises(LedgerKeyError, match="symbolic link"):
        load_grid_key(Settings(database_url=f"sqlite:///{tmp_path / 'grid.db'}"))


def test_httpx_sends_the_raw_bytes() -> None:
    """The non-ASCII test above really sends bytes outside ASCII (not an encoding error)."""
    request = httpx.Request("GET", "http://127.0.0.1/", headers={"Authorization": b"\xc3\xa9"})
    assert request.headers.raw[-1][1] == b"\xc3\xa9"

"""``p2p-grid invite``: one link with the grid's address and the code, and its QR code.

The QR code is read back with ZXing, an independent decoder, and a household
joins a real grid server with the printed link through the real GridClient.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from grid_server.cli.main import main
from grid_server.config import load_settings
from grid_server.domain.clock import ManualClock
from p2p_energy_client.invitation import check_code, parse_invitation
from tests.cli.conftest import Places
from tests.support.grid_server import OPERATOR_TOKEN, run_grid_server
from tests.support.operator_cli import first_start, start_once, write_config
from tests.support.qr import decode_terminal

pytestmark = pytest.mark.usefixtures("socket_enabled")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def grid_config(places: Places) -> Path:
    return first_start(write_config(places.root / "srv"))


def test_one_link_and_its_qr_code(grid_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["invite", "--config", str(grid_config), "--zone", "street"]) == 0
    out, err = capsys.readouterr()
    link = out.splitlines()[0]
    invitation = parse_invitation(link)
    assert invitation.grid_url == "https://grid.example.org"
    assert link == f"https://grid.example.org/join#{invitation.code}"
    assert decode_terminal(out) == [link]
    assert err.startswith("One one-time invitation to Our street (our-street): zone street, ")
    assert "pastes the link into Home Assistant" in err


def test_links_only(grid_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--no-qr: one link a line and nothing else on stdout (for a script or a mail merge)."""
    assert main(["invite", "--config", str(grid_config), "--count", "3", "--no-qr"]) == 0
    out, err = capsys.readouterr()
    links = out.splitlines()
    assert len(links) == 3
    assert len({parse_invitation(link).code for link in links}) == 3
    assert all(link.startswith("https://grid.example.org/join#") for link in links)
    assert err.startswith("3 one-time invitations to Our street")


def test_without_a_public_url_the_bare_code_and_how_to_set_it(
    places: Places, capsys: pytest.CaptureFixture[str]
) -> None:
    config = first_start(write_config(places.root / "srv", public_url=None))
    assert main(["invite", "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    code = out.strip()
    assert check_code(code) == code
    assert f'Add it to {config}:\n\n  [grid]\n  public_url = "https://grid.example.org"\n' in err


@pytest.mark.parametrize("form", ["code", "link", "lower-case code"])
def test_revoke(form: str, grid_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["invite", "--config", str(grid_config), "--no-qr"]) == 0
    link = capsys.readouterr().out.strip()
    code = parse_invitation(link).code
    given = {"code": code, "link": link, "lower-case code": code.lower()}[form]
    assert main(["invite", "--config", str(grid_config), "--revoke", given]) == 0
    assert capsys.readouterr().out.strip() == f"revoked {code}"
    assert main(["invite", "--config", str(grid_config), "--revoke", given]) == 2
    assert capsys.readouterr().err.strip() == (
        "p2p-grid invite: no such unrevoked invitation (not_found, code)"
    )


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("https://grid.example.org/", "the link has no invitation code after '#'"),
        ("ABCD-1890", "an invitation code is letters A-Z and digits 2-7 in groups of four"),
    ],
)
def test_revoke_refuses_what_is_not_an_invitation(
    given: str, problem: str, grid_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["invite", "--config", str(grid_config), "--revoke", given]) == 2
    assert problem in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_a_household_joins_with_the_printed_link(
    places: Places, capsys: pytest.CaptureFixture[str]
) -> None:
    """Serve, invite from the command line, join with the link: the whole operator path."""
    port = free_port()
    config = write_config(places.root / "srv", public_url=f"http://127.0.0.1:{port}")
    await start_once(config)
    settings = load_settings(config).model_copy(
        update={"operator_token": OPERATOR_TOKEN, "run_cycle": False}
    )
    # Grid time is real time here: the example script signs with the real clock.
    clock = ManualClock(datetime.now(UTC))
    async with run_grid_server(
        settings.database_url, settings=settings, port=port, clock=clock
    ) as grid:
        status = await asyncio.to_thread(main, ["invite", "--config", str(config)])
        assert status == 0
        link = capsys.readouterr().out.splitlines()[0]
        invitation = parse_invitation(link)
        assert invitation.grid_url == grid.url
        client = grid.client()
        await client.join(invitation.code, "The Smiths")
        members = await grid.grid.operator.list_participants()
        assert [(m["address"], m["name"]) for m in members] == [(client.address, "The Smiths")]

        # The quick start's check, examples/try_join.py, as an operator runs it.
        await asyncio.to_thread(main, ["invite", "--config", str(config), "--no-qr"])
        link = capsys.readouterr().out.strip()
        tried = await asyncio.create_subprocess_exec(
            sys.executable,
            str(EXAMPLES / "try_join.py"),
            link,
            "--name",
            "Test household",
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await tried.communicate()
        assert tried.returncode == 0
        lines = out.decode().splitlines()
        assert lines[:2] == [
            f"joined Our street (our-street) at {grid.url}",
            "as Test household, zone street, role prosumer",
        ]
        address = lines[2].rsplit(" ", 1)[1]
        assert lines[3] == "wallet balance: 0 micro-EUR"
        members = await grid.grid.operator.list_participants()
        assert [m["name"] for m in members if m["address"] == address] == ["Test household"]

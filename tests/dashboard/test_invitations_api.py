"""The dashboard's invitations over real HTTP (SQLite and PostgreSQL): issue, list, revoke.

Each issued invitation comes back once as code, link and QR code (read back
with ZXing); the list never holds a code; a household joins with the code.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import numpy as np
import pytest
import zxingcpp

from grid_server.config import GridConfig, ZoneConfig
from p2p_energy_client.invitation import parse_invitation
from tests.support.grid_server import OPERATOR_TOKEN, RunningGrid, run_grid_server

pytestmark = pytest.mark.usefixtures("socket_enabled")

AUTH = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
PUBLIC_URL = "https://grid.example.org"


def config(public_url: str | None = PUBLIC_URL) -> GridConfig:
    return GridConfig(
        id="test-grid",
        name="Test grid",
        public_url=public_url,
        zones=(ZoneConfig(id="root"), ZoneConfig(id="feeder-1", parent="root")),
    )


@pytest.fixture
async def grid(database_url: str) -> Any:
    async with run_grid_server(database_url, grid=config()) as running:
        yield running


def svg_modules(svg: str) -> list[list[bool]]:
    """The dark modules of segno's SVG path (``M x y.5 h n m …``), as a matrix."""
    size = int(re.search(r'width="(\d+)"', svg).group(1)) // 4  # type: ignore[union-attr]
    matrix = [[False] * size for _ in range(size)]
    path = re.search(r'stroke="#000" d="([^"]+)"', svg).group(1)  # type: ignore[union-attr]
    x = y = 0.0
    for op, a, b in re.findall(r"([Mmh])(-?[\d.]+)(?: (-?[\d.]+))?", path):
        if op == "M":
            x, y = float(a), float(b)
        elif op == "m":
            x, y = x + float(a), y + float(b)
        else:
            for column in range(int(x), int(x + float(a))):
                matrix[int(y)][column] = True
            x += float(a)
    return matrix


def decode_svg(svg: str) -> list[str]:
    modules = np.array([[0 if d else 255 for d in row] for row in svg_modules(svg)], np.uint8)
    image = np.kron(modules, np.ones((8, 8), np.uint8))
    return [r.text for r in zxingcpp.read_barcodes(image)]


async def test_issue_list_join_revoke(grid: RunningGrid) -> None:
    async with httpx.AsyncClient(base_url=grid.url, headers=AUTH) as http:
        answer = await http.post(
            "/dashboard/api/invitations",
            json={"zone": "feeder-1", "role": "prosumer", "count": 2, "expires_in_seconds": 3600},
        )
        assert answer.status_code == 201
        issued = answer.json()["invitations"]
        assert len(issued) == 2
        for invitation in issued:
            assert invitation["link"] == f"{PUBLIC_URL}/join#{invitation['code']}"
            assert (invitation["zone"], invitation["role"]) == ("feeder-1", "prosumer")
            assert decode_svg(invitation["qr_svg"]) == [invitation["link"]]
            assert "<title>Invitation to Test grid</title>" in invitation["qr_svg"]
        first, second = (parse_invitation(i["link"]).code for i in issued)
        member = grid.client()
        await member.join(first, "The Smiths")
        revoked = await http.post(
            "/dashboard/api/invitations/revoke", json={"code": issued[1]["link"]}
        )
        assert revoked.json() == {"revoked": second}
        listing = (await http.get("/dashboard/api/invitations")).json()
    assert listing["public_url"] == PUBLIC_URL
    assert listing["total"] == 2
    assert [z["id"] for z in listing["zones"]] == ["feeder-1", "root"]
    states = {row["hint"]: row["state"] for row in listing["invitations"]}
    assert states == {first[:4]: "used", second[:4]: "revoked"}
    assert first not in str(listing) and second not in str(listing)


async def test_without_a_public_url_codes_only(database_url: str) -> None:
    async with run_grid_server(database_url, grid=config(None)) as grid:
        async with httpx.AsyncClient(base_url=grid.url, headers=AUTH) as http:
            issued = (await http.post("/dashboard/api/invitations", json={})).json()
            listing = (await http.get("/dashboard/api/invitations")).json()
    (invitation,) = issued["invitations"]
    assert (invitation["link"], invitation["qr_svg"]) == (None, None)
    assert issued["public_url"] is None and listing["public_url"] is None
    assert listing["invitations"][0]["state"] == "open"


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/dashboard/api/invitations", {"count": 21}, 422, "count"),
        ("/dashboard/api/invitations", {"count": 0}, 422, "count"),
        ("/dashboard/api/invitations", {"expires_in_seconds": 0}, 422, "expires_in_seconds"),
        ("/dashboard/api/invitations", {"role": "admin"}, 422, "role"),
        ("/dashboard/api/invitations", {"zone": "nowhere"}, 404, "zone"),
        ("/dashboard/api/invitations", {"codes": 1}, 422, "codes"),
        ("/dashboard/api/invitations/revoke", {"code": "ABCD-1890"}, 422, "code"),
        ("/dashboard/api/invitations/revoke", {"code": "https://x.org/join"}, 422, "code"),
        ("/dashboard/api/invitations/revoke", {"code": "ABCD-EFGH"}, 404, "code"),
        ("/dashboard/api/invitations/revoke", {}, 422, "code"),
    ],
)
async def test_refusals_name_the_field(
    grid: RunningGrid, path: str, body: dict[str, Any], status: int, field: str
) -> None:
    async with httpx.AsyncClient(base_url=grid.url, headers=AUTH) as http:
        answer = await http.post(path, json=body)
    assert answer.status_code == status
    assert answer.json()["error"]["field"] == field
    assert await grid.grid.operator.list_invitations() == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/dashboard/api/invitations"),
        ("POST", "/dashboard/api/invitations"),
        ("POST", "/dashboard/api/invitations/revoke"),
    ],
)
async def test_only_the_operator(grid: RunningGrid, method: str, path: str) -> None:
    async with httpx.AsyncClient(base_url=grid.url) as http:
        answer = await http.request(method, path, json={})
    assert answer.status_code == 401
    assert await grid.grid.operator.list_invitations() == []

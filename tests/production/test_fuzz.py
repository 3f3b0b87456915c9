"""Fuzzing the HTTP API from its own OpenAPI document (schemathesis, bounded and seeded).

Every operation of ``/openapi.json`` gets valid and invalid inputs
(``schemathesis.toml``: mode, examples per operation, seed) against a real
``p2p-grid serve`` on SQLite whose clock stands still, so a run is
repeatable. Requests carry a member's session token, or the operator's token
on the operator and dashboard routes. Checks: no 5xx; every 4xx is the
documented ``{"error": {"code", "field", "message"}}`` with a code whose
status is that response's; responses conform to the document (status codes,
content types, bodies); the server is still healthy afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_socket
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.grid_client import GridClient
from p2p_energy_client.protocol import (
    ERRORS,
    ErrorCode,
    MeterDecl,
    OrderSpec,
    Reading,
    Side,
    SourceDecl,
    SourceKind,
)
from tests.support.processes import OPERATOR_TOKEN, GridProcess, Operator, SharedClock, grid_toml
from tests.support.production_scenario import START, T0, Q

pytestmark = pytest.mark.usefixtures("socket_enabled")

CONFIG = Path(__file__).parents[2] / "schemathesis.toml"


@dataclass
class LiveGrid:
    url: str
    member_token: str


@pytest.fixture(scope="module")
def live_grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGrid]:
    pytest_socket.enable_socket()
    pytest_socket.socket_allow_hosts(["127.0.0.1"])
    tmp = tmp_path_factory.mktemp("fuzz")
    clock = SharedClock(tmp / "clock", START)
    server = GridProcess(
        "fuzz",
        f"sqlite:///{tmp / 'grid.db'}",
        tmp,
        config=grid_toml(tmp / "grid.toml"),
        clock=clock,
        env={"P2P_RATE_PER_ADDRESS": "100000", "P2P_BURST_PER_ADDRESS": "100000"},
    )

    async def start() -> str:
        await server.run()
        operator = Operator(server.url)
        client = GridClient(server.url, KeyPair.generate(), clock=clock.now)
        try:
            await client.join(await operator.invite(), "Fuzz household")
            await client.set_assets(
                [SourceDecl("pv", "Roof", SourceKind.SOLAR, 4_000)],
                [MeterDecl("main", "Main", 8_000)],
            )
            await client.send_readings([Reading(T0, "main", 100)])
            await client.submit_orders(T0 + 2 * Q, [OrderSpec("s", Side.SELL, 100, "0.1000")])
            token = (await client.open_session()).token
        finally:
            await client.close()
            await operator.close()
        return token

    try:
        token = asyncio.run(start())
        clock.set(START + timedelta(minutes=1))  # (still well inside every window)
        yield LiveGrid(server.url, token)
    finally:
        asyncio.run(server.stop())
        pytest_socket.enable_socket()


@pytest.fixture(scope="module")
def api_schema(live_grid: LiveGrid) -> Any:
    config = SchemathesisConfig.from_path(CONFIG)
    return schemathesis.openapi.from_url(f"{live_grid.url}/openapi.json", config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


def error_body(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx is ``{"error": {"code", "field", "message"}}`` with the code's own status."""
    if not 400 <= response.status_code < 500:
        return None
    body = response.json()
    assert isinstance(body, dict) and set(body) <= {"error"}, body
    error = body["error"]
    assert {"code", "field", "message"} <= set(error), error
    assert isinstance(error["message"], str) and error["message"], error
    assert error["field"] is None or isinstance(error["field"], str), error
    code = ErrorCode(error["code"])
    # (405: a method the route does not have, answered as ``malformed``.)
    expected = 405 if response.status_code == 405 else ERRORS[code][0]
    assert expected == response.status_code, (code, response.status_code)
    return True


@schema.parametrize()
def test_the_api_holds_against_generated_input(case: Any, live_grid: LiveGrid) -> None:
    operator = case.path.startswith(("/api/v1/operator", "/dashboard"))
    token = OPERATOR_TOKEN if operator else live_grid.member_token
    if case.path == "/api/v1/operator/invitations" and isinstance(case.body, dict):
        # Up to 100,000 codes per request is right for an operator, but each
        # takes a hash and a row: more than the fuzzing budget. 100 is enough.
        count = case.body.get("count")
        if isinstance(count, int) and not isinstance(count, bool) and count > 100:
            case.body["count"] = 100
    response = case.call(base_url=live_grid.url, headers={"Authorization": f"Bearer {token}"})
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            error_body,
        ],
    )

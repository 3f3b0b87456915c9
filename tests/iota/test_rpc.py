"""The JSON-RPC client: response shapes as the IOTA node writes them, and transport failures.

The sample answers below follow ``iota-json-rpc-types`` (camelCase, u64 as
decimal strings, object versions as numbers inside ``reference`` but as
strings in coins and object data, owners as ``{"AddressOwner": …}``).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from p2p_energy_client.ledger.iota.bcs import digest_to_base58
from p2p_energy_client.ledger.iota.rpc import (
    IotaRpcClient,
    MalformedResponse,
    NodeUnavailable,
    RpcError,
    is_iota_coin_type,
    parse_transaction_block,
)
from tests.support.iota_node import Fault, StandInIotaNode

pytestmark = pytest.mark.usefixtures("socket_enabled")

SENDER = "0x" + "a1" * 32
RECIPIENT = "0x" + "b2" * 32
DIGEST = digest_to_base58(bytes(range(32)))
IOTA_TYPE = "0x2::iota::IOTA"


def _response(**overrides: Any) -> dict[str, Any]:
    response: dict[str, Any] = {
        "digest": DIGEST,
        "transaction": {
            "data": {
                "messageVersion": "v1",
                "transaction": {
                    "kind": "ProgrammableTransaction",
                    "inputs": [
                        {"type": "pure", "valueType": "u64", "value": "1500"},
                        {"type": "pure", "valueType": "address", "value": RECIPIENT},
                    ],
                    "transactions": [
                        {"SplitCoins": ["GasCoin", [{"Input": 0}]]},
                        {"TransferObjects": [[{"NestedResult": [0, 0]}], {"Input": 1}]},
                    ],
                },
                "sender": SENDER,
                "gasData": {
                    "payment": [{"objectId": "0x" + "c3" * 32, "version": 7, "digest": DIGEST}],
                    "owner": SENDER,
                    "price": "1000",
                    "budget": "3000000",
                },
            },
            "txSignatures": ["AA=="],
        },
        "effects": {
            "messageVersion": "v1",
            "status": {"status": "success"},
            "executedEpoch": "12",
            "gasUsed": {
                "computationCost": "1000000",
                "computationCostBurned": "1000000",
                "storageCost": "1976000",
                "storageRebate": "980400",
                "nonRefundableStorageFee": "0",
            },
            "transactionDigest": DIGEST,
            "gasObject": {
                "owner": {"AddressOwner": SENDER},
                "reference": {"objectId": "0x" + "c3" * 32, "version": 8, "digest": DIGEST},
            },
        },
        "balanceChanges": [
            {
                "owner": {"AddressOwner": SENDER},
                "coinType": "0x2::iota::IOTA",
                "amount": "-1997100",
            },
            {"owner": {"AddressOwner": RECIPIENT}, "coinType": IOTA_TYPE, "amount": "1500"},
            {"owner": {"ObjectOwner": RECIPIENT}, "coinType": IOTA_TYPE, "amount": "9"},
            {"owner": {"AddressOwner": RECIPIENT}, "coinType": "0x9::fake::IOTA", "amount": "77"},
        ],
        "timestampMs": "1735000000123",
        "checkpoint": "4711",
    }
    response.update(overrides)
    return response


def test_parses_a_node_response() -> None:
    block = parse_transaction_block(_response(), "test")
    assert block.digest == DIGEST
    assert block.sender == SENDER
    assert block.succeeded
    assert block.checkpoint == 4711 and block.timestamp_ms == 1_735_000_000_123
    assert block.gas_used is not None and block.gas_used.net == 1_000_000 + 1_976_000 - 980_400
    # Only IOTA held directly by the address counts.
    assert block.net_change(RECIPIENT) == 1500
    assert block.net_change(SENDER) == -1_997_100


def test_failure_status_and_missing_optional_parts() -> None:
    effects = _response()["effects"] | {
        "status": {"status": "failure", "error": "InsufficientCoinBalance in command 0"}
    }
    block = parse_transaction_block(
        {"digest": DIGEST, "effects": effects, "confirmedLocalExecution": True}, "test"
    )
    assert block.status == "failure" and block.error == "InsufficientCoinBalance in command 0"
    assert block.sender is None and block.checkpoint is None and block.balance_changes is None


@pytest.mark.parametrize(
    "broken",
    [
        {"effects": _response()["effects"] | {"transactionDigest": digest_to_base58(b"\x01" * 32)}},
        {"effects": _response()["effects"] | {"status": {"status": "maybe"}}},
        {"effects": {k: v for k, v in _response()["effects"].items() if k != "gasUsed"}},
        {"balanceChanges": [{"owner": {"AddressOwner": RECIPIENT}, "amount": "5"}]},
        {"balanceChanges": [{"owner": "Immutable", "coinType": "0x2::iota::IOTA", "amount": 1.5}]},
        {"checkpoint": "soon"},
        {"digest": "not-base58-0OIl"},
    ],
)
def test_malformed_responses_are_errors_not_defaults(broken: dict[str, Any]) -> None:
    with pytest.raises(MalformedResponse):
        parse_transaction_block(_response(**broken), "test")


def test_coin_type_normalisation() -> None:
    assert is_iota_coin_type("0x2::iota::IOTA")
    assert is_iota_coin_type("0x" + "0" * 63 + "2::iota::IOTA")
    assert not is_iota_coin_type("0x3::iota::IOTA")
    assert not is_iota_coin_type("0x2::coin::Coin<0x2::iota::IOTA>")


async def _serve(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
    app = web.Application()
    app.router.add_post("/", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    return runner, f"http://127.0.0.1:{sock.getsockname()[1]}/"


@pytest.fixture
async def odd_node() -> AsyncIterator[tuple[list[Any], str]]:
    answers: list[Any] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        answer = answers.pop(0)
        if isinstance(answer, web.StreamResponse):
            return answer
        if callable(answer):
            answer = answer(body)
        return web.json_response(answer)

    runner, url = await _serve(handler)
    yield answers, url
    await runner.cleanup()


async def test_transport_failures_are_node_unavailable(odd_node: tuple[list[Any], str]) -> None:
    answers, url = odd_node
    async with IotaRpcClient(url) as rpc:
        answers.append(web.Response(status=502, text="Bad Gateway"))
        with pytest.raises(NodeUnavailable, match="HTTP 502"):
            await rpc.get_reference_gas_price()
        answers.append(web.Response(text="<html>maintenance</html>"))
        with pytest.raises(MalformedResponse, match="not JSON"):
            await rpc.get_reference_gas_price()
        answers.append(lambda body: {"jsonrpc": "2.0", "id": body["id"] + 1, "result": "1"})
        with pytest.raises(MalformedResponse, match="not a reply"):
            await rpc.get_reference_gas_price()
        answers.append(lambda body: {"jsonrpc": "2.0", "id": body["id"], "result": {"x": 1}})
        with pytest.raises(MalformedResponse):
            await rpc.get_reference_gas_price()
        # A JSON-RPC error object is the node refusing, with its code.
        answers.append(
            lambda body: {
                "jsonrpc": "2.0",
                "id": body["id"],
                "error": {"code": -32050, "message": "Transaction timed out before finality"},
            }
        )
        with pytest.raises(RpcError) as info:
            await rpc.get_reference_gas_price()
        assert info.value.transient and info.value.rpc_code == -32050
        # And a well-formed answer (a bare number, as in the OpenRPC example, or a string).
        answers.append(lambda body: {"jsonrpc": "2.0", "id": body["id"], "result": 1000})
        assert await rpc.get_reference_gas_price() == 1000


async def test_closed_port_and_timeouts(iota_node: StandInIotaNode) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    async with IotaRpcClient(f"http://127.0.0.1:{port}/") as rpc:
        with pytest.raises(NodeUnavailable, match="connection failed"):
            await rpc.get_balance(SENDER)
    iota_node.inject("iotax_getBalance", Fault.HANG_BEFORE_APPLY)
    async with IotaRpcClient(iota_node.url, request_timeout=0.2) as rpc:
        with pytest.raises(NodeUnavailable, match="timed out"):
            await rpc.get_balance(SENDER)
        assert await rpc.get_balance(SENDER) == 0


async def test_unknown_transaction_is_none_other_errors_raise(iota_node: StandInIotaNode) -> None:
    async with IotaRpcClient(iota_node.url) as rpc:
        assert await rpc.get_transaction_block(DIGEST) is None
        with pytest.raises(RpcError):
            await rpc.call("iotax_getCoins", ["not an address"])

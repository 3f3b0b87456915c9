"""Small helpers for posting hand-made envelopes (attacks, retries)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx

from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.protocol import Body, sign


def envelope(
    keys: KeyPair, body: Body, seq: int, ts: datetime, grid: str = "test-grid"
) -> dict[str, Any]:
    return sign(keys, grid, seq, body, ts=ts)


async def post(url: str, path: str, data: dict[str, Any] | bytes) -> httpx.Response:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        return await http.post(f"/api/v1{path}", content=raw)


def error_of(response: httpx.Response) -> tuple[int, str, str | None]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["field"]

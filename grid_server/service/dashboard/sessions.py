"""The operator's dashboard sessions, kept on the server so that logging out revokes one.

The browser holds a random token (the cookie); the database holds only its
HMAC under a key derived from the operator token: a stolen database gives
no usable cookie, and a new operator token ends every session. Sessions run
on wall time (a person's login), not on the grid's clock.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta

from grid_server.storage import dashboard_sessions as store
from grid_server.storage.db import Database

MAX_TOKEN_LENGTH = 200  # a cookie longer than any token we issue is not looked up


def _hash(key: bytes, token: str) -> bytes:
    return hmac.new(key, b"session|" + token.encode("utf-8"), hashlib.sha256).digest()


def _now() -> datetime:
    return datetime.now(UTC)


async def open_session(db: Database, key: bytes, seconds: int) -> str:
    """A new session; the token for the cookie (old, expired sessions are dropped)."""
    token = secrets.token_urlsafe(32)
    now = _now()
    async with db.write() as conn:
        await store.remove_expired(conn, now)
        await store.add(conn, _hash(key, token), now, now + timedelta(seconds=seconds))
    return token


async def is_open(db: Database, key: bytes, token: str | None) -> bool:
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return False
    async with db.read() as conn:
        return await store.is_open(conn, _hash(key, token), _now())


async def close_session(db: Database, key: bytes, token: str | None) -> None:
    """Log out: the session ends on the server, whatever the browser keeps."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return
    async with db.write() as conn:
        await store.remove(conn, _hash(key, token))

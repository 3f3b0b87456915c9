"""The typed HTTP client a household uses to talk to its grid.

:class:`GridClient` signs every write (see :mod:`.protocol`), hands out
sequence numbers that survive restarts (:mod:`.sequence`), serialises writes
with a lock, and retries a write after a timeout or a lost connection by
sending the *identical* envelope again: the grid answers an exact duplicate
with the original result, so a retry can never count anything twice. Reads
use a session token obtained lazily with a signed ``session`` envelope and
renewed on expiry or 401. Answers are parsed into :mod:`.models`.

Errors: a refusal by the grid raises :class:`~.protocol.ProtocolError` (code,
field, message from the body); a grid that cannot be reached, times out or
answers 5xx raises :class:`GridUnavailable`.

Only aiohttp and this package are imported (no Home Assistant, no server).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

import aiohttp

from .backoff import retry_delay
from .crypto import KeyPair
from .lifecycle import AsyncCloseable
from .models import (
    AssetsView,
    Event,
    Fill,
    GridInfo,
    LedgerAccount,
    LedgerEntry,
    LineItem,
    MarketResult,
    OrderBook,
    Participant,
    PaymentResult,
    ReadingsResult,
    SentEnvelope,
    SessionToken,
    Statement,
    StoredReading,
)
from .protocol import (
    API_PREFIX,
    Assets,
    Body,
    ErrorCode,
    Join,
    LedgerKind,
    MeterDecl,
    OpenSession,
    Orders,
    OrderSpec,
    Payment,
    ProtocolError,
    Reading,
    Readings,
    SourceDecl,
    Transfer,
    sign,
)
from .receipts import AuditRoot, Receipt, VerifiedReceipt, verify_receipt
from .sequence import SequenceCounter
from .units import format_utc

_LOGGER = logging.getLogger(__name__)

DEFAULT_TIMEOUT: Final = 10.0
DEFAULT_RETRIES: Final = 3
# Renew a session token this long before the grid says it expires.
SESSION_RENEW_MARGIN_SECONDS: Final = 30


class GridUnavailable(Exception):
    """The grid could not be reached, timed out, or failed (5xx); try again later."""


# --- the client -----------------------------------------------------------------

_RETRY_STATUSES: Final = frozenset({502, 503, 504})


class GridClient(AsyncCloseable):
    """A household's connection to one grid.

    ``last_seq`` is the last sequence number this key used; persist
    :attr:`last_seq` and pass it back after a restart (even without it the
    counter moves forward with the wall clock). ``clock`` gives the ``ts`` of
    envelopes (a demo grid may run on an accelerated clock).
    """

    def __init__(
        self,
        base_url: str,
        keys: KeyPair,
        *,
        session: aiohttp.ClientSession | None = None,
        grid_id: str | None = None,
        last_seq: int = 0,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        clock: Callable[[], datetime] | None = None,
        sent_buffer: int = 256,
    ) -> None:
        self._base = base_url.rstrip("/")
        self.keys = keys
        self._session = session
        self._own_session = session is None
        self._grid_id = grid_id
        self._seq = SequenceCounter(last_seq)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retries = max(1, retries)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._write_lock = asyncio.Lock()
        self._token: SessionToken | None = None
        self._token_lock = asyncio.Lock()
        # The exact bytes of recently accepted envelopes, to check receipts against.
        self._sent: deque[SentEnvelope] = deque(maxlen=max(1, sent_buffer))

    # -- plumbing ---------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        return self._seq.last

    @property
    def address(self) -> str:
        return self.keys.address

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    def _url(self, path: str) -> str:
        return f"{self._base}{API_PREFIX}{path}"

    async def _grid(self) -> str:
        if self._grid_id is None:
            self._grid_id = (await self.grid_info()).grid
        return self._grid_id

    async def _request(
        self,
        method: str,
        path: str,
        *,
        data: bytes | None = None,
        params: Mapping[str, str] | None = None,
        auth: bool = False,
        optional_auth: bool = False,
    ) -> Any:
        """One HTTP exchange, retried on network errors with the same bytes."""
        headers = {"Content-Type": "application/json"} if data is not None else {}
        renewed = False
        attempt = 0
        while True:
            attempt += 1
            if auth or optional_auth:
                await self._authorise(headers, required=auth)
            try:
                status, body = await self._exchange(method, path, data, params, headers)
            except aiohttp.ClientConnectorError as exc:
                # Nothing listens: no request left us, and retrying within a
                # second rarely finds the grid back. The caller retries later.
                raise GridUnavailable(f"{method} {path}: {exc!r}") from exc
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                if attempt >= self._retries:
                    raise GridUnavailable(f"{method} {path}: {exc!r}") from exc
                await _backoff(attempt)
                continue
            if status in _RETRY_STATUSES and attempt < self._retries:
                await _backoff(attempt)
                continue
            parsed = _json_or_none(body)
            if status < 400:
                return parsed
            error = ProtocolError.from_wire(parsed, status)
            if (
                status == 401
                and error.code is ErrorCode.UNAUTHENTICATED
                and (auth or optional_auth)
                and not renewed
            ):
                # Expired or revoked token: open a new session once.
                self._token = None
                renewed = True
                headers.pop("Authorization", None)
                continue
            if status >= 500 and error.code is ErrorCode.MALFORMED:
                raise GridUnavailable(f"{method} {path}: HTTP {status}")
            raise error

    async def _authorise(self, headers: dict[str, str], *, required: bool) -> None:
        token = await self._session_token(required=required)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"

    async def _exchange(
        self,
        method: str,
        path: str,
        data: bytes | None,
        params: Mapping[str, str] | None,
        headers: dict[str, str],
    ) -> tuple[int, bytes]:
        async with self._http().request(
            method,
            self._url(path),
            data=data,
            params=params,
            headers=headers,
            timeout=self._timeout,
        ) as resp:
            return resp.status, await resp.read()

    async def _session_token(self, *, required: bool) -> str | None:
        now = self._clock()
        token = self._token
        if token is not None and (token.expires_at - now).total_seconds() > (
            SESSION_RENEW_MARGIN_SECONDS
        ):
            return token.token
        async with self._token_lock:
            if self._token is None or self._token is token:
                try:
                    self._token = await self.open_session()
                except ProtocolError:
                    if required:
                        raise
                    return None  # not a member (yet): read as the public
            return self._token.token

    async def _send(self, path: str, body: Body, *, resync: bool = True) -> Any:
        """Sign ``body`` with the next sequence number and post it.

        A lost answer is retried with the identical envelope; a REPLAY
        (another copy of this key moved the counter on) resyncs from ``me()``
        once and signs again.
        """
        grid = await self._grid()
        async with self._write_lock:
            seq = self._seq.next()
            envelope = sign(self.keys, grid, seq, body, ts=self._ts())
            data = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()
            try:
                answer = await self._request("POST", path, data=data)
                self._sent.append(SentEnvelope(body.TYPE, seq, data, self._clock()))
                return answer
            except ProtocolError as exc:
                if not (resync and exc.code is ErrorCode.REPLAY):
                    raise
                last = (exc.details or {}).get("last_seq")
                if isinstance(last, int):
                    # Another copy of this key moved the counter on: skip past it.
                    self._seq.observe(last)
                elif body.TYPE == "session":
                    raise
        if not isinstance(last, int):
            self._seq.observe((await self.me()).last_seq)
        return await self._send(path, body, resync=False)

    def _ts(self) -> datetime:
        return self._clock().astimezone(UTC).replace(microsecond=0)

    # -- public reads -------------------------------------------------------------

    async def grid_info(self) -> GridInfo:
        info = GridInfo.from_wire(await self._request("GET", "/grid"))
        if self._grid_id is None:
            self._grid_id = info.grid
        return info

    async def market(self, interval: datetime) -> MarketResult:
        """Zone prices and volumes of an interval; with a session, also own fills."""
        path = f"/market/{quote(format_utc(interval))}"
        return MarketResult.from_wire(await self._request("GET", path, optional_auth=True))

    # -- signed writes --------------------------------------------------------------

    async def join(self, invitation: str, name: str) -> Participant:
        return Participant.from_wire(await self._send("/participants", Join(invitation, name)))

    async def open_session(self) -> SessionToken:
        token = SessionToken.from_wire(await self._send("/sessions", OpenSession()))
        self._token = token
        return token

    async def set_assets(
        self, sources: Iterable[SourceDecl] = (), meters: Iterable[MeterDecl] = ()
    ) -> AssetsView:
        body = Assets(tuple(sources), tuple(meters))
        return AssetsView.from_wire(await self._send("/assets", body))

    async def send_readings(
        self, readings: Sequence[Reading], correction: bool = False
    ) -> ReadingsResult:
        body = Readings(tuple(readings), correction)
        return ReadingsResult.from_wire(await self._send("/readings", body))

    async def submit_orders(
        self,
        interval: datetime,
        place: Iterable[OrderSpec] = (),
        cancel: Iterable[str] = (),
        replace_all: bool = False,
    ) -> OrderBook:
        body = Orders(interval, tuple(place), tuple(cancel), replace_all)
        return OrderBook.from_wire(await self._send("/orders", body))

    async def pay(
        self,
        statement_id: str,
        *,
        transfer: Mapping[str, Any] | None = None,
        tx: str | None = None,
    ) -> PaymentResult:
        """Pay a statement: a signed local-ledger ``transfer``, or an IOTA digest ``tx``.

        Build the transfer with ``ledger.local.SignedTransfer`` (or let
        ``payments.LocalPayer`` do it all).
        """
        if (transfer is None) == (tx is None):
            raise ValueError("give either a local transfer or an IOTA transaction digest")
        body = (
            Payment(statement_id, LedgerKind.LOCAL, transfer=dict(transfer))
            if transfer is not None
            else Payment(statement_id, LedgerKind.IOTA, tx=tx)
        )
        return PaymentResult.from_wire(await self._send("/payments", body))

    async def ledger_transfer(self, transfer: Mapping[str, Any]) -> LedgerEntry:
        """Apply a signed local-ledger transfer (not paying a statement)."""
        body = Transfer(dict(transfer))
        return LedgerEntry.from_wire(await self._send("/ledger/transfers", body))

    # -- authenticated reads -----------------------------------------------------------

    async def ledger_account(self, address: str | None = None) -> LedgerAccount:
        """A local-ledger account: the own one by default (or the grid's)."""
        path = f"/ledger/accounts/{quote(address or self.address, safe='')}"
        return LedgerAccount.from_wire(await self._request("GET", path, auth=True))

    async def ledger_transaction(self, tx_id: str) -> LedgerEntry:
        """A local-ledger transaction this participant sent or received (NOT_FOUND otherwise)."""
        path = f"/ledger/transactions/{quote(tx_id, safe='')}"
        return LedgerEntry.from_wire(await self._request("GET", path, auth=True))

    async def me(self) -> Participant:
        return Participant.from_wire(await self._request("GET", "/me", auth=True))

    async def orders(self, interval: datetime) -> OrderBook:
        params = {"interval": format_utc(interval)}
        return OrderBook.from_wire(await self._request("GET", "/orders", params=params, auth=True))

    async def readings(self, since: datetime, until: datetime) -> list[StoredReading]:
        params = {"since": format_utc(since), "until": format_utc(until)}
        data = await self._request("GET", "/readings", params=params, auth=True)
        return [StoredReading.from_wire(r) for r in data["readings"]]

    async def fills(self, since: datetime, until: datetime) -> list[Fill]:
        params = {"since": format_utc(since), "until": format_utc(until)}
        data = await self._request("GET", "/fills", params=params, auth=True)
        return [Fill.from_wire(f) for f in data["fills"]]

    async def line_items(self, since: datetime, until: datetime) -> list[LineItem]:
        params = {"since": format_utc(since), "until": format_utc(until)}
        data = await self._request("GET", "/line-items", params=params, auth=True)
        return [LineItem.from_wire(x) for x in data["lines"]]

    async def statements(self, since: datetime | None = None) -> list[Statement]:
        params = {} if since is None else {"since": format_utc(since)}
        data = await self._request("GET", "/statements", params=params, auth=True)
        return [Statement.from_wire(s) for s in data["statements"]]

    async def statement(self, statement_id: str) -> Statement:
        path = f"/statements/{quote(statement_id, safe='')}"
        return Statement.from_wire(await self._request("GET", path, auth=True))

    # -- audit trail (see .receipts) -------------------------------------------------

    @property
    def recent_envelopes(self) -> tuple[SentEnvelope, ...]:
        """Envelopes the grid accepted from this client, with their exact bytes (newest last)."""
        return tuple(self._sent)

    def sent_since(self, seq: int) -> list[SentEnvelope]:
        """The remembered envelopes with a sequence number above ``seq``."""
        return [e for e in self._sent if e.seq > seq]

    async def receipt(
        self,
        *,
        seq: int | None = None,
        log_seq: int | None = None,
        signature: bytes | None = None,
    ) -> Receipt:
        """The grid's receipt for an own envelope (by payload ``seq`` or ``signature``) or entry."""
        if log_seq is not None:
            data = await self._request("GET", f"/receipts/{int(log_seq)}", auth=True)
        elif seq is not None:
            params = {"seq": str(int(seq))}
            data = await self._request("GET", "/receipts", params=params, auth=True)
        elif signature is not None:
            params = {"signature": base64.b64encode(signature).decode()}
            data = await self._request("GET", "/receipts", params=params, auth=True)
        else:
            raise ValueError("name the entry: seq, log_seq or signature")
        return Receipt.from_wire(data)

    async def verify_sent(
        self, sent: SentEnvelope, *, trusted_root: bytes | AuditRoot | None = None
    ) -> VerifiedReceipt:
        """Fetch the receipt of an envelope this client sent and verify it locally.

        Raises ``ReceiptPending`` while its interval is open, ``ReceiptError``
        when the receipt does not prove that the grid logged these bytes.
        """
        receipt = await self.receipt(seq=sent.seq)
        return verify_receipt(receipt, sent.wire, trusted_root=trusted_root)

    async def audit_roots(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        from_seq: int | None = None,
        limit: int | None = None,
    ) -> list[AuditRoot]:
        """The grid's public interval roots (keep copies: a root must never change)."""
        params: dict[str, str] = {}
        if since is not None:
            params["since"] = format_utc(since)
        if until is not None:
            params["until"] = format_utc(until)
        if from_seq is not None:
            params["from_seq"] = str(int(from_seq))
        if limit is not None:
            params["limit"] = str(int(limit))
        data = await self._request("GET", "/audit/roots", params=params)
        return [AuditRoot.from_wire(r) for r in data["roots"]]

    # -- live stream -------------------------------------------------------------------

    async def events(
        self,
        since: int = 0,
        *,
        reconnect_delay: float = 1.0,
        heartbeat: float = 20.0,
        on_connected: Callable[[], None] | None = None,
        on_unreachable: Callable[[Exception], None] | None = None,
        on_dropped: Callable[[], None] | None = None,
    ) -> AsyncIterator[Event]:
        """Events for this participant, from after ``since``, forever.

        Reconnects after a dropped connection, a grid that cannot be reached
        or answers 5xx, waiting longer after each failure (from
        ``reconnect_delay`` up to 30 s), and resumes after the last event it
        yielded, so nothing is missed or repeated. ``on_connected`` is called
        each time the grid accepts the stream, ``on_dropped`` each time an
        accepted stream ends, ``on_unreachable`` each time a connection attempt
        finds no grid (a dropped stream that reconnects at once is no outage).
        A refusal (4xx, a protocol error) raises. Stop by breaking out of the
        loop (or cancelling the task).
        """
        last = since
        failures = 0
        while True:
            connected = False

            def accepted() -> None:
                nonlocal connected, failures
                connected, failures = True, 0
                if on_connected is not None:
                    on_connected()

            try:
                # aclosing: a caller that stops listening closes the connection now.
                async with aclosing(self._stream_once(last, heartbeat, accepted)) as stream:
                    async for event in stream:
                        last = event.id
                        yield event
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status == 401:
                    self._token = None
                elif exc.status < 500:
                    raise GridUnavailable(f"stream refused: HTTP {exc.status}") from exc
                elif on_unreachable is not None:
                    on_unreachable(GridUnavailable(f"stream refused: HTTP {exc.status}"))
            except (aiohttp.ClientError, TimeoutError, OSError, GridUnavailable) as exc:
                _LOGGER.debug("stream dropped: %r", exc)
                if not connected and on_unreachable is not None:
                    on_unreachable(exc)
            if connected and on_dropped is not None:
                on_dropped()
            failures += 1
            await asyncio.sleep(retry_delay(failures, first=reconnect_delay, longest=30.0))

    async def _stream_once(
        self, last: int, heartbeat: float, accepted: Callable[[], None]
    ) -> AsyncGenerator[Event]:
        """One connection of the live stream: the events after ``last`` until it ends.

        An expired session ends it quietly (the caller connects again with a
        new token); any other error message from the grid raises.
        """
        token = await self._session_token(required=True)
        url = self._url("/stream").replace("http", "ws", 1)
        async with self._http().ws_connect(
            url,
            params={"since": str(last)},
            headers={"Authorization": f"Bearer {token}"},
            heartbeat=heartbeat,
            timeout=aiohttp.ClientWSTimeout(ws_close=self._timeout.total or 10.0),
        ) as ws:
            accepted()
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    return
                data = json.loads(msg.data)
                if "error" in data:
                    error = ProtocolError.from_wire(data)
                    if error.code is ErrorCode.UNAUTHENTICATED:
                        self._token = None
                        return
                    raise error
                event = Event.from_wire(data)
                if event.id > last:
                    last = event.id
                    yield event


__all__ = ["GridClient", "GridUnavailable"]


async def _backoff(attempt: int) -> None:
    await asyncio.sleep(min(0.2 * 2**attempt, 2.0))


def _json_or_none(body: bytes) -> Any:
    """The answer's JSON, or None when it has none (an empty or non-JSON error page)."""
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None

"""Keeping a household's own envelopes until the grid's receipts for them verify.

The receipts themselves and their offline verification are in
:mod:`.receipts`; this module fetches them with a :class:`~.grid_client.GridClient`
for the envelopes it sent and keeps what is pending, verified or failed, as
JSON-able state that survives restarts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .grid_client import GridClient
from .models import SentEnvelope
from .protocol import ProtocolError
from .receipts import ReceiptError, ReceiptPending, VerifiedReceipt, verify_receipt

_LOGGER = logging.getLogger(__name__)

_KEPT_ROOTS: Final = 2_000
_KEPT_FAILURES: Final = 100


@dataclass
class ReceiptKeeper:
    """Keeps a household's own envelopes until their receipts verify.

    Feed it what the client sent (:meth:`track`, e.g. with
    ``client.sent_since(keeper.last_tracked_seq)``), call :meth:`check` now
    and then (after an interval closes), show :attr:`last_verified` and
    :attr:`failures`. Roots seen in verified receipts are remembered: should
    the grid later present another root for the same root entry, that is a
    failure too. All state is JSON-able (:meth:`to_state`).
    """

    types: frozenset[str] = frozenset({"readings", "orders"})
    max_pending: int = 1_000
    pending: dict[int, SentEnvelope] = field(default_factory=dict)
    last_tracked_seq: int = 0
    last_verified: VerifiedReceipt | None = None
    verified_count: int = 0
    failures: dict[int, str] = field(default_factory=dict)  # payload seq → reason
    roots_seen: dict[int, str] = field(default_factory=dict)  # root seq → root hex

    def track(self, sent: Iterable[SentEnvelope]) -> None:
        for envelope in sent:
            self.last_tracked_seq = max(self.last_tracked_seq, envelope.seq)
            if envelope.type in self.types:
                self.pending[envelope.seq] = envelope
        while len(self.pending) > self.max_pending:
            dropped = min(self.pending)
            del self.pending[dropped]
            _LOGGER.warning("receipt for envelope %d no longer kept (too many pending)", dropped)

    async def check(self, client: GridClient, *, limit: int = 50) -> list[VerifiedReceipt]:
        """Fetch and verify receipts of pending envelopes, oldest first.

        Stops at the first receipt that is still pending (later envelopes
        cannot be closed before it). Network trouble is left to the caller
        (``GridUnavailable`` propagates; nothing is lost).
        """
        self.track(client.sent_since(self.last_tracked_seq))
        done: list[VerifiedReceipt] = []
        for seq in sorted(self.pending)[:limit]:
            sent = self.pending[seq]
            try:
                receipt = await client.receipt(seq=seq)
                trusted = None
                if receipt.root is not None and receipt.root.seq in self.roots_seen:
                    trusted = bytes.fromhex(self.roots_seen[receipt.root.seq])
                verified = verify_receipt(receipt, sent.wire, trusted_root=trusted)
            except ReceiptPending:
                break
            except (ReceiptError, ProtocolError) as exc:
                self._fail(seq, str(exc))
                continue
            del self.pending[seq]
            self.roots_seen[verified.root_seq] = verified.root.hex()
            while len(self.roots_seen) > _KEPT_ROOTS:
                del self.roots_seen[min(self.roots_seen)]
            self.last_verified = verified
            self.verified_count += 1
            done.append(verified)
        return done

    def _fail(self, seq: int, reason: str) -> None:
        _LOGGER.warning("receipt for envelope %d failed: %s", seq, reason)
        self.pending.pop(seq, None)
        self.failures[seq] = reason
        while len(self.failures) > _KEPT_FAILURES:
            del self.failures[min(self.failures)]

    def to_state(self) -> dict[str, Any]:
        return {
            "pending": [e.to_state() for e in self.pending.values()],
            "last_tracked_seq": self.last_tracked_seq,
            "last_verified": None if self.last_verified is None else self.last_verified.to_state(),
            "verified_count": self.verified_count,
            "failures": {str(k): v for k, v in self.failures.items()},
            "roots_seen": {str(k): v for k, v in self.roots_seen.items()},
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any] | None, **options: Any) -> ReceiptKeeper:
        keeper = cls(**options)
        if not state:
            return keeper
        keeper.pending = {
            e.seq: e for e in (SentEnvelope.from_state(x) for x in state.get("pending", ()))
        }
        keeper.last_tracked_seq = int(state.get("last_tracked_seq", 0))
        last = state.get("last_verified")
        keeper.last_verified = None if last is None else VerifiedReceipt.from_state(last)
        keeper.verified_count = int(state.get("verified_count", 0))
        keeper.failures = {int(k): str(v) for k, v in state.get("failures", {}).items()}
        keeper.roots_seen = {int(k): str(v) for k, v in state.get("roots_seen", {}).items()}
        return keeper

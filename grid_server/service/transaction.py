"""What one writer transaction knows and changes: the types the writer and the handlers share.

The group-commit writer (:mod:`.ingest`) opens one database transaction per
batch of envelopes and builds a :class:`TxContext`. The payload handlers
(:mod:`.handlers`) check each envelope against what the context prefetched,
update that view in memory (so a later envelope of the batch sees what an
earlier one changed) and buffer their writes in it; the writer flushes the
buffers with one ``executemany`` per table before it commits. Every field
has its own type: what the handlers read and write is checked, not looked
up by string keys.

The chain head is locked only at the end of the batch (see
:mod:`grid_server.storage.audit_log`), so while the handlers run nobody
knows where the batch's entries will land in the log. What refers to an
entry (an envelope's row, the readings and orders it wrote, a payment, a
join's record) holds the entry's *position in the batch* (1 = the batch's
first entry, :meth:`TxContext.next_log_pos`) until :meth:`TxContext.place`
turns every one of them into the chain's seq in one place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.domain.assets import AssetLimits, AssetRow
from grid_server.domain.readings import RecordedReading
from grid_server.storage.ingest_queries import ReadingWrite
from p2p_energy_client.models import LedgerTerms, OrderView, Statement
from p2p_energy_client.protocol import Envelope, ProtocolError, canonical_json

from .local_ledger import Head

if TYPE_CHECKING:
    from .payments import PaymentService

# (kind, ref, body) of an audit log entry, and (participant, None for public or
# events.OPERATOR, kind, data) of a live event.
LogItem = tuple[str, str, bytes]
Event = tuple[int | None, str, dict[str, Any]]
# One participant's order book in one interval.
BookKey = tuple[int, datetime]


@dataclass(slots=True)
class Outcome:
    status: int
    body: bytes
    duplicate: bool = False


def error_outcome(exc: ProtocolError) -> Outcome:
    return Outcome(exc.status, orjson.dumps(exc.to_wire()))


@dataclass(slots=True)
class Submission:
    raw: bytes
    envelope: Envelope
    future: asyncio.Future[Outcome]
    client: str = ""

    @property
    def type(self) -> str:
        return self.envelope.payload.type


@dataclass(slots=True)
class ParticipantRow:
    id: int
    address: str
    name: str
    zone: str
    role: str
    status: str
    last_seq: int
    joined_at: datetime


@dataclass(slots=True)
class Handled:
    """A handler's answer to an accepted envelope."""

    answer: dict[str, Any]
    participant_id: int
    # What is stored for duplicate answers, when it must differ from ``answer``.
    stored: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class IngestRules:
    """What the handlers need of the grid: its id and rules, and the payment side.

    ``after_payments`` runs after a batch that moved money has committed
    (wakes the live streams and the payout worker).
    """

    grid_id: str
    limits: AssetLimits
    join_zone: str
    session_ttl_seconds: int
    payments: PaymentService
    after_payments: Callable[[], None]


@dataclass(slots=True)
class BatchStatement:
    """A statement a batch's payments look at, as it stands in this batch."""

    id: str
    participant_id: int
    address: str
    view: Statement  # as of now in this batch (without lines)
    terms: LedgerTerms
    changed: bool = False


@dataclass(slots=True)
class PaymentBatch:
    """What one writer transaction knows and changes of the ledger and statements."""

    head: Head | None = None
    # address → [balance, last seq]; ``known`` are rows that exist in the database.
    accounts: dict[str, list[int]] = field(default_factory=dict)
    known: set[str] = field(default_factory=set)
    dirty: set[str] = field(default_factory=set)
    tx_ids: set[str] = field(default_factory=set)  # ledger entries (database and batch)
    checked: set[str] = field(default_factory=set)  # tx ids looked up in the database
    used: set[str] = field(default_factory=set)  # payment and payout tx ids
    statements: dict[str, BatchStatement] = field(default_factory=dict)
    entries: list[dict[str, Any]] = field(default_factory=list)  # ``ledger_entries`` rows
    # ``payments`` rows (their ``envelope`` a log position: see TxContext.place)
    payment_rows: list[dict[str, Any]] = field(default_factory=list)
    log: list[LogItem] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    signatures: list[bytes] = field(default_factory=list)  # envelopes of IOTA payments


@dataclass
class TxContext:
    """State of one writer transaction, shared by the handlers of its envelopes."""

    conn: AsyncConnection
    rules: IngestRules
    now: datetime
    postgres: bool  # rows the batch may change are locked (see audit_log for the order)
    participants: dict[str, ParticipantRow] = field(default_factory=dict)
    # What the handlers look at, prefetched for the whole batch (handlers.prefetch):
    # asset versions by participant; readings recorded by participant and (interval,
    # asset); order books by participant and interval; interval states.
    assets: dict[int, list[AssetRow]] = field(default_factory=dict)
    readings: dict[int, dict[tuple[datetime, str], RecordedReading]] = field(default_factory=dict)
    order_books: dict[BookKey, dict[str, OrderView]] = field(default_factory=dict)
    interval_states: dict[datetime, str] = field(default_factory=dict)
    payments: PaymentBatch | None = None
    # What the batch writes, flushed at its end: envelope rows and log entries, new
    # sequence numbers, readings, changed order books (→ the log position of the
    # envelope that last changed each), payments and the grid's record of each join
    # (ref, record). Log positions are the batch's own until :meth:`place`.
    envelope_rows: list[dict[str, Any]] = field(default_factory=list)
    log_items: list[LogItem] = field(default_factory=list)
    seq_updates: dict[int, int] = field(default_factory=dict)
    reading_writes: list[ReadingWrite] = field(default_factory=list)
    changed_books: dict[BookKey, int] = field(default_factory=dict)
    payment_rows: list[dict[str, Any]] = field(default_factory=list)
    join_log: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    after_commit: list[Callable[[], None]] = field(default_factory=list)
    # Envelopes accepted in this batch: (sender, seq) → (payload hash, answer stored, type).
    accepted_results: dict[tuple[str, int], tuple[bytes, bytes, str]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def next_log_pos(self) -> int:
        """The position in the batch of the entry the envelope being applied gets."""
        return len(self.log_items) + 1

    def place(self, head_seq: int) -> None:
        """Turn the batch's log positions into chain seqs: the chain head is at ``head_seq``.

        The one place that knows what refers to a log entry; the writer calls
        it after locking the chain head, before writing what it changes.
        """
        for row in self.envelope_rows:
            row["log_seq"] += head_seq
        for write in self.reading_writes:
            # A value corrected again in the same batch is the next write's
            # ``replaces``: the same object, so it is moved exactly once.
            write.value.envelope += head_seq
        self.changed_books = {key: pos + head_seq for key, pos in self.changed_books.items()}
        for row in self.payment_rows:
            row["envelope"] += head_seq
        # The grid's record of a join names its envelope: logged after the batch's others.
        for ref, record in self.join_log:
            placed = {**record, "envelope": record["envelope"] + head_seq}
            self.log_items.append(("participant", ref, canonical_json(placed)))
        self.join_log = []

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

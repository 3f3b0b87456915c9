"""Tables of the grid database (SQLAlchemy Core).

Energy and money are BIGINT (Wh, price ticks of 10^-6/kWh, micro-units of
the currency); times are UTC (``timestamptz`` on PostgreSQL, ISO text on
SQLite, always returned timezone-aware). Change the schema only through a new
Alembic migration in ``migrations/versions``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else _utc(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return _aware(value)

    # On SQLite the text is written and read here directly, in the format SQLAlchemy's
    # SQLite DATETIME uses ("2026-01-05 00:15:00.000000"), instead of through its
    # strftime and regular-expression processors: a busy interval binds and reads
    # hundreds of thousands of times, and those two were a tenth of its CPU.
    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        return _sqlite_text

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        return _sqlite_datetime


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime: the grid stores UTC only")
    return value.astimezone(UTC)


def _aware(value: datetime) -> datetime:
    """A stored time, timezone-aware UTC (SQLite's text has no zone: it is UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sqlite_text(value: datetime | None) -> str | None:
    # Naive UTC text compares correctly as strings.
    if value is None:
        return None
    return _utc(value).replace(tzinfo=None).isoformat(" ", "microseconds")


def _sqlite_datetime(value: str | datetime | None) -> datetime | None:
    if value is None:
        return None
    return _aware(value if isinstance(value, datetime) else datetime.fromisoformat(value))


# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

grid_state = Table(
    "grid_state",
    metadata,
    Column("grid", String(64), primary_key=True),
    # The first interval the cycle is responsible for (the grid's start).
    Column("cycle_from", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

zones = Table(
    "zones",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(64)),
    Column("parent", String(64), ForeignKey("zones.id")),
    Column("fee", String(24), nullable=False),
    Column("fee_ticks", BigInteger, nullable=False),
    Column("capacity_up_wh", BigInteger),
    Column("capacity_down_wh", BigInteger),
    Column("updated_at", UTCDateTime, nullable=False),
)

utility_prices = Table(
    "utility_prices",
    metadata,
    Column("effective_from", UTCDateTime, primary_key=True),
    Column("retail", String(24), nullable=False),
    Column("feed_in", String(24), nullable=False),
    Column("retail_ticks", BigInteger, nullable=False),
    Column("feed_in_ticks", BigInteger, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

participants = Table(
    "participants",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("address", String(66), nullable=False, unique=True),
    Column("public_key", LargeBinary(32), nullable=False),
    Column("name", String(64), nullable=False),
    Column("zone", String(64), ForeignKey("zones.id"), nullable=False),
    Column("role", String(16), nullable=False),
    Column("status", String(16), nullable=False),  # active, suspended, removed
    Column("last_seq", BigInteger, nullable=False),
    Column("joined_at", UTCDateTime, nullable=False),
    Column("status_changed_at", UTCDateTime),
)

invitations = Table(
    "invitations",
    metadata,
    # Only a hash of the code is kept: a leaked database leaks no usable code.
    Column("code_hash", LargeBinary(32), primary_key=True),
    Column("hint", String(8), nullable=False),
    Column("zone", String(64), ForeignKey("zones.id")),
    Column("role", String(16)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime),
    Column("used_at", UTCDateTime),
    Column("used_by", BigInteger, ForeignKey("participants.id")),
    Column("revoked_at", UTCDateTime),
)

sessions = Table(
    "sessions",
    metadata,
    Column("token_hash", LargeBinary(32), primary_key=True),
    Column("participant_id", BigInteger, ForeignKey("participants.id"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

# The operator's dashboard sessions (issue 13): the cookie is a random token,
# stored only as its HMAC under a key derived from the operator token, so
# logging out deletes the session, and a new operator token ends them all.
dashboard_sessions = Table(
    "dashboard_sessions",
    metadata,
    Column("token_hash", LargeBinary(32), primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Index("ix_dashboard_sessions_expires", "expires_at"),
)

assets = Table(
    "assets",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("participant_id", BigInteger, ForeignKey("participants.id"), nullable=False),
    Column("asset_id", String(64), nullable=False),
    Column("category", String(8), nullable=False),  # source, meter
    Column("kind", String(16)),  # source kind
    Column("name", String(64), nullable=False),
    Column("rated_power_w", BigInteger),
    Column("valid_from", UTCDateTime, nullable=False),
    Column("valid_until", UTCDateTime),
    # Batteries only: what the plausibility rules check them with (meters.md).
    Column("charge_meter", String(64)),
    Column("usable_capacity_wh", BigInteger),
    Index("ix_assets_participant", "participant_id", "asset_id"),
)

# The operator's decision on a household's asset (grid_server.domain.approval.Decision):
# the latest one per asset; what it saw and what it approved (NULL power: refused).
asset_decisions = Table(
    "asset_decisions",
    metadata,
    Column("participant_id", BigInteger, ForeignKey("participants.id"), nullable=False),
    Column("asset_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # solar, wind, battery, other, meter
    Column("declared_power_w", BigInteger),
    Column("declared_capacity_wh", BigInteger),
    Column("approved_power_w", BigInteger),
    Column("approved_capacity_wh", BigInteger),
    Column("note", String(200), nullable=False),
    Column("decided_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("participant_id", "asset_id"),
)

# Implausible readings (grid_server.domain.plausibility.Flag): kept as sent in
# ``readings``, settled at ``bound_wh``; the payouts of the statement the
# interval lands on wait until the operator decides (``decision``: bound, reading).
reading_flags = Table(
    "reading_flags",
    metadata,
    Column("participant_id", BigInteger, ForeignKey("participants.id"), nullable=False),
    Column("interval_start", UTCDateTime, nullable=False),
    Column("asset_id", String(64), nullable=False),
    Column("category", String(8), nullable=False),  # source, meter
    Column("reading_wh", BigInteger, nullable=False),
    Column("bound_wh", BigInteger, nullable=False),
    Column("code", String(32), nullable=False),
    Column("flagged_at", UTCDateTime, nullable=False),
    Column("decision", String(8)),  # NULL: held for the operator
    Column("note", String(200)),
    Column("decided_at", UTCDateTime),
    # An accepted reading's difference is settled in the next interval settled, once.
    Column("booked_at", UTCDateTime),
    PrimaryKeyConstraint("participant_id", "interval_start", "asset_id"),
    Index("ix_reading_flags_open", "decision", "participant_id"),
)

# Per battery: the most it could still give out after the last settled interval
# (plausibility's headroom U), so each interval is checked without history.
battery_headroom = Table(
    "battery_headroom",
    metadata,
    Column("participant_id", BigInteger, ForeignKey("participants.id"), nullable=False),
    Column("asset_id", String(64), nullable=False),
    Column("interval_start", UTCDateTime, nullable=False),  # the interval it was carried from
    Column("headroom_wh", BigInteger, nullable=False),
    PrimaryKeyConstraint("participant_id", "asset_id"),
)

envelopes = Table(
    "envelopes",
    metadata,
    # The envelope's entry in the audit log (its id everywhere else).
    Column("log_seq", BigInteger, primary_key=True, autoincrement=False),
    # Ed25519 signatures are deterministic: one signature, one envelope.
    Column("signature", LargeBinary(64), nullable=False, unique=True),
    Column("participant_id", BigInteger, ForeignKey("participants.id")),
    Column("sender", String(66), nullable=False),
    Column("type", String(16), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("ts", UTCDateTime, nullable=False),
    Column("payload_hash", LargeBinary(32), nullable=False),
    Column("raw", LargeBinary, nullable=False),  # the request body exactly as received
    Column("received_at", UTCDateTime, nullable=False),
    Column("result", LargeBinary, nullable=False),  # the JSON answered (for retries)
    Index("ix_envelopes_sender_seq", "sender", "seq"),
)

readings = Table(
    "readings",
    metadata,
    Column("participant_id", BigInteger, ForeignKey("participants.id"), nullable=False),
    Column("interval_start", UTCDateTime, nullable=False),
    Column("asset_id", String(64), nullable=False),
    Column("energy_wh", BigInteger, nullable=False),
    Column("envelope", BigInteger, nullable=False),  # log_seq of the envelope
    Column("recorded_at", UTCDateTime, nullable=False),
    Column("revision", Integer, nullable=False),
    PrimaryKeyConstraint("participant_id", "interval_start", "asset_id"),
    Index("ix_readings_interval", "interval_start"),
)

reading_history = Table(
    "reading_history",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("participant_id", BigInteger, nullable=False),
    Column("interval_start", UTCDateTime, nullable=False),
    Column("asset_id", String(64), nullable=False),
    Column("energy_wh", BigInteger, nullable=False),
    Column("envelope", BigInteger, nullable=False),  # log_seq of the envelope
    Column("recorded_at", UTCDateTime, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("replaced_at", UTCDateTime, nullable=False),
    Column("replaced_by", BigInteger, nullable=False),  # log_seq of the correction
    Index("ix_reading_history_key", "participant_id", "interval_start", "asset_id"),
)

orders = Table(
    "orders",
    metadata,
    Column("interval_start", UTCDateTime, nullable=False),
    Column("participant_id", BigInteger, ForeignKey("participants.id"), nullable=False),
    Column("order_id", String(64), nullable=False),
    Column("side", String(4), nullable=False),
    Column("energy_wh", BigInteger, nullable=False),
    Column("price", String(24), nullable=False),
    Column("price_ticks", BigInteger, nullable=False),
    Column("zone", String(64), nullable=False),
    Column("envelope", BigInteger, nullable=False),  # log_seq of the envelope
    Column("placed_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("interval_start", "participant_id", "order_id"),
)

intervals = Table(
    "intervals",
    metadata,
    Column("start", UTCDateTime, primary_key=True),
    Column("state", String(12), nullable=False),  # open, cleared, settled
    Column("cleared_at", UTCDateTime),
    Column("settled_at", UTCDateTime),
    Column("welfare", String(40)),
    Column("clearing_ms", Integer),
    Column("settlement_ms", Integer),
    Column("orders", Integer),
)

zone_results = Table(
    "zone_results",
    metadata,
    Column("interval_start", UTCDateTime, nullable=False),
    Column("zone", String(64), nullable=False),
    Column("price_ticks", BigInteger, nullable=False),
    Column("bought_wh", BigInteger, nullable=False),
    Column("sold_wh", BigInteger, nullable=False),
    Column("utility_buy_wh", BigInteger, nullable=False),
    Column("utility_sell_wh", BigInteger, nullable=False),
    Column("flow_to_parent_wh", BigInteger, nullable=False),
    PrimaryKeyConstraint("interval_start", "zone"),
)

fills = Table(
    "fills",
    metadata,
    Column("interval_start", UTCDateTime, nullable=False),
    Column("participant_id", BigInteger, nullable=False),
    Column("order_id", String(64), nullable=False),
    Column("side", String(4), nullable=False),
    Column("zone", String(64), nullable=False),
    Column("energy_wh", BigInteger, nullable=False),
    Column("filled_wh", BigInteger, nullable=False),
    Column("price_ticks", BigInteger, nullable=False),
    Column("limit_ticks", BigInteger, nullable=False),
    PrimaryKeyConstraint("interval_start", "participant_id", "order_id"),
    Index("ix_fills_participant", "participant_id", "interval_start"),
)

line_items = Table(
    "line_items",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("interval_start", UTCDateTime, nullable=False),
    # NULL: the grid's own account (fees, congestion income, rounding).
    Column("participant_id", BigInteger),
    # "grid:sharing_link_fee:" and a zone id of up to 64 characters.
    Column("kind", String(96), nullable=False),
    Column("energy_wh", BigInteger, nullable=False),
    Column("price_ticks", BigInteger, nullable=False),
    Column("amount_micro", BigInteger, nullable=False),  # > 0: owed to the grid
    Index("ix_line_items_participant", "participant_id", "interval_start"),
    Index("ix_line_items_interval", "interval_start"),
)

periods = Table(
    "periods",
    metadata,
    Column("start", UTCDateTime, primary_key=True),
    Column("state", String(12), nullable=False),  # issued
    Column("issued_at", UTCDateTime, nullable=False),
)

statements = Table(
    "statements",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("participant_id", BigInteger, ForeignKey("participants.id"), nullable=False),
    Column("period_start", UTCDateTime, nullable=False),
    Column("period_end", UTCDateTime, nullable=False),
    Column("currency", String(3), nullable=False),
    # > 0: the participant owes the grid; < 0: the grid owes the participant.
    Column("amount_due_micro", BigInteger, nullable=False),
    # Payments (issue 4) add up here and move ``status`` on.
    Column("paid_micro", BigInteger, nullable=False, default=0),
    Column("status", String(16), nullable=False),  # issued, partially_paid, paid
    Column("issued_at", UTCDateTime, nullable=False),
    Column("intervals", Integer, nullable=False),
    UniqueConstraint("participant_id", "period_start"),
)

log_entries = Table(
    "log_entries",
    metadata,
    Column("grid", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("kind", String(24), nullable=False),
    Column("ref", String(200), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    Column("prev_hash", LargeBinary(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("grid", "seq"),
    Index("ix_log_entries_kind_ref", "kind", "ref"),
)

chain_heads = Table(
    "chain_heads",
    metadata,
    Column("grid", String(64), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    # NULL: a public event (market results) every participant and dashboard sees.
    Column("participant_id", BigInteger),
    # "grid:sharing_link_fee:" and a zone id of up to 64 characters.
    Column("kind", String(96), nullable=False),
    Column("body", Text, nullable=False),  # JSON of the event's data
    Column("created_at", UTCDateTime, nullable=False),
    Column("public", Boolean, nullable=False),
    Index("ix_events_participant", "participant_id", "id"),
)

# --- audit trail (issue 7): interval roots and their anchors -------------------------
# Insert-only, like log_entries: migration 0002 adds triggers that refuse
# UPDATE and DELETE on these tables and on log_entries.

audit_roots = Table(
    "audit_roots",
    metadata,
    Column("grid", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),  # the root's own log entry
    Column("interval_from", UTCDateTime, nullable=False),
    Column("interval_to", UTCDateTime, nullable=False),
    Column("first_seq", BigInteger, nullable=False),
    Column("last_seq", BigInteger, nullable=False),  # < first_seq: an empty range
    Column("root", LargeBinary(32), nullable=False),
    # Subtree roots of each 256-entry chunk (receipts without reading the range).
    Column("chunks", LargeBinary, nullable=False),
    Column("prev_hash", LargeBinary(32), nullable=False),
    Column("entry_hash", LargeBinary(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("grid", "seq"),
    UniqueConstraint("grid", "interval_from"),
    Index("ix_audit_roots_first_seq", "grid", "first_seq"),
)

audit_anchors = Table(
    "audit_anchors",
    metadata,
    Column("grid", String(64), nullable=False),
    Column("last_root_seq", BigInteger, nullable=False),
    Column("first_root_seq", BigInteger, nullable=False),
    Column("batch_root", LargeBinary(32), nullable=False),
    Column("payload", LargeBinary, nullable=False),  # the notarized bytes
    Column("ledger", String(16), nullable=False),
    Column("network", String(16)),
    Column("package", String(66), nullable=False),
    Column("object_id", String(66), nullable=False),
    Column("object_version", BigInteger, nullable=False),
    Column("state_version", BigInteger, nullable=False),
    Column("digest", String(64), nullable=False, unique=True),
    Column("log_seq", BigInteger, nullable=False),  # the anchor's own log entry
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("grid", "last_root_seq"),
)

# Results of ``p2p-grid audit verify`` (for the dashboard and monitoring).
# Not part of the log: a verification checks the log, it does not change it.
audit_verifications = Table(
    "audit_verifications",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("grid", String(64), nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("first_seq", BigInteger, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    Column("entries", BigInteger, nullable=False),
    Column("state_checked", Boolean, nullable=False),
    Column("problem", Text),
    Column("seconds", Float, nullable=False),
    Column("verified_at", UTCDateTime, nullable=False),
    Index("ix_audit_verifications_grid", "grid", "id"),
)

# Signed anchoring transactions, stored before they are sent: after a crash
# the same bytes are re-submitted (they can land at most once).
audit_anchor_attempts = Table(
    "audit_anchor_attempts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("grid", String(64), nullable=False),
    Column("first_root_seq", BigInteger, nullable=False),
    Column("last_root_seq", BigInteger, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("signed", Text, nullable=False),  # SignedTransaction.to_json()
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_audit_anchor_attempts_root", "grid", "last_root_seq"),
)

# --- payments and the local ledger (issue 4) ----------------------------------------
# Amounts here are in the ledger's own unit: micro-units of the currency on the
# local ledger, nanos on IOTA.

ledger_heads = Table(
    "ledger_heads",
    metadata,
    Column("grid", String(64), primary_key=True),
    Column("kind", String(8), nullable=False),  # the ledger the grid uses: local, iota
    # The grid's own account (its key's address); a different key is refused at start.
    Column("address", String(66), nullable=False),
    # Local ledger chain: number and hash of the last entry, and all money minted.
    Column("entries", BigInteger, nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    Column("minted", BigInteger, nullable=False),
    Column("mints", BigInteger, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

ledger_accounts = Table(
    "ledger_accounts",
    metadata,
    Column("address", String(66), primary_key=True),
    Column("balance", BigInteger, nullable=False),
    # The last ledger sequence number applied for transfers from this account.
    Column("seq", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("balance >= 0", name="balance_not_negative"),
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("index", BigInteger, primary_key=True, autoincrement=False),
    Column("tx_id", String(64), nullable=False, unique=True),
    Column("kind", String(8), nullable=False),  # mint, transfer
    Column("sender", String(66)),  # NULL for a mint
    Column("recipient", String(66), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("memo", String(128)),
    Column("public_key", LargeBinary(32)),
    Column("signature", LargeBinary(64)),
    Column("prev_hash", LargeBinary(32), nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_ledger_entries_sender", "sender", "index"),
    Index("ix_ledger_entries_recipient", "recipient", "index"),
)

statement_terms = Table(
    "statement_terms",
    metadata,
    Column("statement_id", String(64), ForeignKey("statements.id"), primary_key=True),
    Column("ledger", String(8), nullable=False),
    Column("unit", String(16), nullable=False),
    Column("rate", String(64), nullable=False),  # ledger units per micro-unit, exact
    Column("amount_due", BigInteger, nullable=False),  # signed like amount_due_micro
    Column("paid", BigInteger, nullable=False),  # same sign
    Column("due_at", UTCDateTime, nullable=False),
    Index("ix_statement_terms_open", "amount_due", "paid"),
)

payments = Table(
    "payments",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    # A transaction settles one statement, once.
    Column("tx_id", String(100), nullable=False, unique=True),
    Column("statement_id", String(64), ForeignKey("statements.id"), nullable=False),
    Column("participant_id", BigInteger, ForeignKey("participants.id"), nullable=False),
    Column("ledger", String(8), nullable=False),
    Column("received", BigInteger, nullable=False),  # what arrived
    Column("credited", BigInteger, nullable=False),  # what it settled of the statement
    Column("envelope", BigInteger, nullable=False),  # log_seq of the payment envelope
    Column("recorded_at", UTCDateTime, nullable=False),
    Index("ix_payments_statement", "statement_id"),
)

# One ledger transaction paying one or many producers (its ``payouts``): stored
# ``prepared`` with every payout and item before it is sent, then ``done`` or
# ``failed`` as a whole, together with its payouts.
payout_batches = Table(
    "payout_batches",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    # IOTA: the digest of the one transaction; local: the id of its first transfer.
    Column("tx_id", String(100), nullable=False, unique=True),
    Column("ledger", String(8), nullable=False),
    Column("amount", BigInteger, nullable=False),  # what its payouts pay in all
    Column("size", Integer, nullable=False),  # how many payouts
    Column("state", String(10), nullable=False),
    # IOTA: the signed transaction (JSON); local: NULL (each payout keeps its transfer).
    Column("signed", LargeBinary),
    Column("created_at", UTCDateTime, nullable=False),
    Column("completed_at", UTCDateTime),
    Column("error", Text),
    Index("ix_payout_batches_state", "state"),
)

payouts = Table(
    "payouts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("batch_id", BigInteger, ForeignKey("payout_batches.id"), nullable=False),
    # The transaction that pays it: an IOTA batch pays many producers in one.
    Column("tx_id", String(100), nullable=False),
    Column("participant_id", BigInteger, ForeignKey("participants.id"), nullable=False),
    Column("recipient", String(66), nullable=False),
    Column("ledger", String(8), nullable=False),
    Column("amount", BigInteger, nullable=False),
    # prepared (signed and stored, maybe sent), done (on the ledger, recorded), failed
    Column("state", String(10), nullable=False),
    # What was signed (JSON): the local transfer; empty in an IOTA batch (see the batch).
    Column("signed", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("completed_at", UTCDateTime),
    Column("error", Text),
    UniqueConstraint("tx_id", "participant_id"),
    Index("ix_payouts_state", "state"),
    Index("ix_payouts_participant", "participant_id"),
    Index("ix_payouts_batch", "batch_id"),
)

payout_items = Table(
    "payout_items",
    metadata,
    Column("payout_id", BigInteger, ForeignKey("payouts.id"), nullable=False),
    Column("statement_id", String(64), ForeignKey("statements.id"), nullable=False),
    Column("amount", BigInteger, nullable=False),
    PrimaryKeyConstraint("payout_id", "statement_id"),
    Index("ix_payout_items_statement", "statement_id"),
)

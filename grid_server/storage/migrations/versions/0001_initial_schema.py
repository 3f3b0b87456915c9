"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27 06:35:53.802028
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import grid_server.storage.schema

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Tables that reference no other table first, then those with foreign keys.
    _create_independent_tables()
    _create_referencing_tables()


def _create_independent_tables() -> None:
    op.create_table(
        "chain_heads",
        sa.Column("grid", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("grid", name=op.f("pk_chain_heads")),
    )
    op.create_table(
        "events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("participant_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column(
            "created_at", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_participant", ["participant_id", "id"], unique=False)

    op.create_table(
        "fills",
        sa.Column(
            "interval_start", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("participant_id", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("zone", sa.String(length=64), nullable=False),
        sa.Column("energy_wh", sa.BigInteger(), nullable=False),
        sa.Column("filled_wh", sa.BigInteger(), nullable=False),
        sa.Column("price_ticks", sa.BigInteger(), nullable=False),
        sa.Column("limit_ticks", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "interval_start", "participant_id", "order_id", name=op.f("pk_fills")
        ),
    )
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.create_index(
            "ix_fills_participant", ["participant_id", "interval_start"], unique=False
        )

    op.create_table(
        "grid_state",
        sa.Column("grid", sa.String(length=64), nullable=False),
        sa.Column(
            "cycle_from", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "created_at", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("grid", name=op.f("pk_grid_state")),
    )
    op.create_table(
        "intervals",
        sa.Column("start", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column(
            "cleared_at", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "settled_at", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("welfare", sa.String(length=40), nullable=True),
        sa.Column("clearing_ms", sa.Integer(), nullable=True),
        sa.Column("settlement_ms", sa.Integer(), nullable=True),
        sa.Column("orders", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("start", name=op.f("pk_intervals")),
    )
    op.create_table(
        "line_items",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "interval_start", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("participant_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("energy_wh", sa.BigInteger(), nullable=False),
        sa.Column("price_ticks", sa.BigInteger(), nullable=False),
        sa.Column("amount_micro", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_line_items")),
    )
    with op.batch_alter_table("line_items", schema=None) as batch_op:
        batch_op.create_index("ix_line_items_interval", ["interval_start"], unique=False)
        batch_op.create_index(
            "ix_line_items_participant", ["participant_id", "interval_start"], unique=False
        )

    op.create_table(
        "log_entries",
        sa.Column("grid", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("ref", sa.String(length=200), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("prev_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column(
            "created_at", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("grid", "seq", name=op.f("pk_log_entries")),
    )
    with op.batch_alter_table("log_entries", schema=None) as batch_op:
        batch_op.create_index("ix_log_entries_kind_ref", ["kind", "ref"], unique=False)

    op.create_table(
        "periods",
        sa.Column("start", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column(
            "issued_at", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("start", name=op.f("pk_periods")),
    )
    op.create_table(
        "reading_history",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("participant_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "interval_start", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("asset_id", sa.String(length=64), nullable=False),
        sa.Column("energy_wh", sa.BigInteger(), nullable=False),
        sa.Column("envelope", sa.BigInteger(), nullable=False),
        sa.Column(
            "recorded_at", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column(
            "replaced_at", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("replaced_by", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reading_history")),
    )
    with op.batch_alter_table("reading_history", schema=None) as batch_op:
        batch_op.create_index(
            "ix_reading_history_key", ["participant_id", "interval_start", "asset_id"], unique=False
        )

    op.create_table(
        "utility_prices",
        sa.Column(
            "effective_from", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("retail", sa.String(length=24), nullable=False),
        sa.Column("feed_in", sa.String(length=24), nullable=False),
        sa.Column("retail_ticks", sa.BigInteger(), nullable=False),
        sa.Column("feed_in_ticks", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("effective_from", name=op.f("pk_utility_prices")),
    )
    op.create_table(
        "zone_results",
        sa.Column(
            "interval_start", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("zone", sa.String(length=64), nullable=False),
        sa.Column("price_ticks", sa.BigInteger(), nullable=False),
        sa.Column("bought_wh", sa.BigInteger(), nullable=False),
        sa.Column("sold_wh", sa.BigInteger(), nullable=False),
        sa.Column("utility_buy_wh", sa.BigInteger(), nullable=False),
        sa.Column("utility_sell_wh", sa.BigInteger(), nullable=False),
        sa.Column("flow_to_parent_wh", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("interval_start", "zone", name=op.f("pk_zone_results")),
    )


def _create_referencing_tables() -> None:
    op.create_table(
        "zones",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=True),
        sa.Column("parent", sa.String(length=64), nullable=True),
        sa.Column("fee", sa.String(length=24), nullable=False),
        sa.Column("fee_ticks", sa.BigInteger(), nullable=False),
        sa.Column("capacity_up_wh", sa.BigInteger(), nullable=True),
        sa.Column("capacity_down_wh", sa.BigInteger(), nullable=True),
        sa.Column(
            "updated_at", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(["parent"], ["zones.id"], name=op.f("fk_zones_parent_zones")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_zones")),
    )
    op.create_table(
        "participants",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("address", sa.String(length=66), nullable=False),
        sa.Column("public_key", sa.LargeBinary(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("zone", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column(
            "joined_at", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "status_changed_at",
            grid_server.storage.schema.UTCDateTime(timezone=True),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(["zone"], ["zones.id"], name=op.f("fk_participants_zone_zones")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_participants")),
        sa.UniqueConstraint("address", name=op.f("uq_participants_address")),
    )
    op.create_table(
        "assets",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("participant_id", sa.BigInteger(), nullable=False),
        sa.Column("asset_id", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=True),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("rated_power_w", sa.BigInteger(), nullable=True),
        sa.Column(
            "valid_from", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "valid_until", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_assets_participant_id_participants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assets")),
    )
    with op.batch_alter_table("assets", schema=None) as batch_op:
        batch_op.create_index("ix_assets_participant", ["participant_id", "asset_id"], unique=False)

    op.create_table(
        "envelopes",
        sa.Column("log_seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("signature", sa.LargeBinary(length=64), nullable=False),
        sa.Column("participant_id", sa.BigInteger(), nullable=True),
        sa.Column("sender", sa.String(length=66), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("ts", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("payload_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column(
            "received_at", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("result", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_envelopes_participant_id_participants"),
        ),
        sa.PrimaryKeyConstraint("log_seq", name=op.f("pk_envelopes")),
        sa.UniqueConstraint("signature", name=op.f("uq_envelopes_signature")),
    )
    with op.batch_alter_table("envelopes", schema=None) as batch_op:
        batch_op.create_index("ix_envelopes_sender_seq", ["sender", "seq"], unique=False)

    op.create_table(
        "invitations",
        sa.Column("code_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("hint", sa.String(length=8), nullable=False),
        sa.Column("zone", sa.String(length=64), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=True),
        sa.Column(
            "created_at", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "expires_at", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("used_at", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=True),
        sa.Column("used_by", sa.BigInteger(), nullable=True),
        sa.Column(
            "revoked_at", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["used_by"], ["participants.id"], name=op.f("fk_invitations_used_by_participants")
        ),
        sa.ForeignKeyConstraint(["zone"], ["zones.id"], name=op.f("fk_invitations_zone_zones")),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_invitations")),
    )
    op.create_table(
        "orders",
        sa.Column(
            "interval_start", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("participant_id", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("energy_wh", sa.BigInteger(), nullable=False),
        sa.Column("price", sa.String(length=24), nullable=False),
        sa.Column("price_ticks", sa.BigInteger(), nullable=False),
        sa.Column("zone", sa.String(length=64), nullable=False),
        sa.Column("envelope", sa.BigInteger(), nullable=False),
        sa.Column(
            "placed_at", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_orders_participant_id_participants"),
        ),
        sa.PrimaryKeyConstraint(
            "interval_start", "participant_id", "order_id", name=op.f("pk_orders")
        ),
    )
    op.create_table(
        "readings",
        sa.Column("participant_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "interval_start", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("asset_id", sa.String(length=64), nullable=False),
        sa.Column("energy_wh", sa.BigInteger(), nullable=False),
        sa.Column("envelope", sa.BigInteger(), nullable=False),
        sa.Column(
            "recorded_at", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_readings_participant_id_participants"),
        ),
        sa.PrimaryKeyConstraint(
            "participant_id", "interval_start", "asset_id", name=op.f("pk_readings")
        ),
    )
    with op.batch_alter_table("readings", schema=None) as batch_op:
        batch_op.create_index("ix_readings_interval", ["interval_start"], unique=False)

    op.create_table(
        "sessions",
        sa.Column("token_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("participant_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "expires_at", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_sessions_participant_id_participants"),
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_sessions")),
    )
    op.create_table(
        "statements",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("participant_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "period_start", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "period_end", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_due_micro", sa.BigInteger(), nullable=False),
        sa.Column("paid_micro", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "issued_at", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("intervals", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_statements_participant_id_participants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_statements")),
        sa.UniqueConstraint(
            "participant_id", "period_start", name=op.f("uq_statements_participant_id_period_start")
        ),
    )


def downgrade() -> None:
    # The reverse order: tables with foreign keys before the tables they reference.
    _drop_referencing_tables()
    _drop_independent_tables()


def _drop_referencing_tables() -> None:
    op.drop_table("statements")
    op.drop_table("sessions")
    with op.batch_alter_table("readings", schema=None) as batch_op:
        batch_op.drop_index("ix_readings_interval")

    op.drop_table("readings")
    op.drop_table("orders")
    op.drop_table("invitations")
    with op.batch_alter_table("envelopes", schema=None) as batch_op:
        batch_op.drop_index("ix_envelopes_sender_seq")

    op.drop_table("envelopes")
    with op.batch_alter_table("assets", schema=None) as batch_op:
        batch_op.drop_index("ix_assets_participant")

    op.drop_table("assets")
    op.drop_table("participants")
    op.drop_table("zones")


def _drop_independent_tables() -> None:
    op.drop_table("zone_results")
    op.drop_table("utility_prices")
    with op.batch_alter_table("reading_history", schema=None) as batch_op:
        batch_op.drop_index("ix_reading_history_key")

    op.drop_table("reading_history")
    op.drop_table("periods")
    with op.batch_alter_table("log_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_log_entries_kind_ref")

    op.drop_table("log_entries")
    with op.batch_alter_table("line_items", schema=None) as batch_op:
        batch_op.drop_index("ix_line_items_participant")
        batch_op.drop_index("ix_line_items_interval")

    op.drop_table("line_items")
    op.drop_table("intervals")
    op.drop_table("grid_state")
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.drop_index("ix_fills_participant")

    op.drop_table("fills")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_participant")

    op.drop_table("events")
    op.drop_table("chain_heads")

"""meters we can believe

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 22:00:00

A battery's charge meter and usable capacity on its asset version; the
operator's decisions on assets above the grid's approval limits; readings
flagged as implausible at settlement (kept, settled at their bound, their
payouts held until the operator decides); each battery's carried headroom.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import grid_server.storage.schema

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = grid_server.storage.schema.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("assets") as batch:
        batch.add_column(sa.Column("charge_meter", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("usable_capacity_wh", sa.BigInteger(), nullable=True))
    op.create_table(
        "asset_decisions",
        sa.Column("participant_id", sa.BigInteger(), nullable=False),
        sa.Column("asset_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("declared_power_w", sa.BigInteger(), nullable=True),
        sa.Column("declared_capacity_wh", sa.BigInteger(), nullable=True),
        sa.Column("approved_power_w", sa.BigInteger(), nullable=True),
        sa.Column("approved_capacity_wh", sa.BigInteger(), nullable=True),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.Column("decided_at", UTC_TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_asset_decisions_participant_id_participants"),
        ),
        sa.PrimaryKeyConstraint("participant_id", "asset_id", name=op.f("pk_asset_decisions")),
    )
    op.create_table(
        "reading_flags",
        sa.Column("participant_id", sa.BigInteger(), nullable=False),
        sa.Column("interval_start", UTC_TIME, nullable=False),
        sa.Column("asset_id", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=8), nullable=False),
        sa.Column("reading_wh", sa.BigInteger(), nullable=False),
        sa.Column("bound_wh", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("flagged_at", UTC_TIME, nullable=False),
        sa.Column("decision", sa.String(length=8), nullable=True),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.Column("decided_at", UTC_TIME, nullable=True),
        sa.Column("booked_at", UTC_TIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_reading_flags_participant_id_participants"),
        ),
        sa.PrimaryKeyConstraint(
            "participant_id", "interval_start", "asset_id", name=op.f("pk_reading_flags")
        ),
    )
    op.create_index(
        "ix_reading_flags_open", "reading_flags", ["decision", "participant_id"], unique=False
    )
    op.create_table(
        "battery_headroom",
        sa.Column("participant_id", sa.BigInteger(), nullable=False),
        sa.Column("asset_id", sa.String(length=64), nullable=False),
        sa.Column("interval_start", UTC_TIME, nullable=False),
        sa.Column("headroom_wh", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_battery_headroom_participant_id_participants"),
        ),
        sa.PrimaryKeyConstraint("participant_id", "asset_id", name=op.f("pk_battery_headroom")),
    )


def downgrade() -> None:
    op.drop_table("battery_headroom")
    op.drop_index("ix_reading_flags_open", table_name="reading_flags")
    op.drop_table("reading_flags")
    op.drop_table("asset_decisions")
    with op.batch_alter_table("assets") as batch:
        batch.drop_column("usable_capacity_wh")
        batch.drop_column("charge_meter")

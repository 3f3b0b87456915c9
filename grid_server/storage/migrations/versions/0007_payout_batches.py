"""payout batches

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 22:00:00

Producers are paid in batches: one ledger transaction (IOTA) or one
database transaction (local ledger) pays many payouts. Every payout belongs
to a batch; the payouts made before become batches of one (same transaction
id, same signed bytes, same state), so recovery has one path. An IOTA batch
pays several producers with one digest, so a payout's transaction id is
unique together with its producer only.

Downgrading refuses (the unique constraint fails) when an IOTA batch paid
several producers: those payouts cannot be told apart without their batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import grid_server.storage.schema

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "payout_batches",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("tx_id", sa.String(length=100), nullable=False),
        sa.Column("ledger", sa.String(length=8), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("signed", sa.LargeBinary(), nullable=True),
        sa.Column(
            "created_at", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "completed_at", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payout_batches")),
        sa.UniqueConstraint("tx_id", name=op.f("uq_payout_batches_tx_id")),
    )
    op.create_index("ix_payout_batches_state", "payout_batches", ["state"], unique=False)
    # Every payout so far becomes a batch of one (an IOTA payout's bytes move to its batch).
    op.execute(
        "INSERT INTO payout_batches "
        "(tx_id, ledger, amount, size, state, signed, created_at, completed_at, error) "
        "SELECT tx_id, ledger, amount, 1, state, "
        "CASE WHEN ledger = 'iota' THEN signed ELSE NULL END, "
        "created_at, completed_at, error FROM payouts ORDER BY id"
    )
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("batch_id", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE payouts SET batch_id = "
        "(SELECT b.id FROM payout_batches b WHERE b.tx_id = payouts.tx_id)"
    )
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.alter_column("batch_id", existing_type=sa.BigInteger(), nullable=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_payouts_batch_id_payout_batches"),
            "payout_batches",
            ["batch_id"],
            ["id"],
        )
        batch_op.drop_constraint("uq_payouts_tx_id", type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_payouts_tx_id_participant_id"), ["tx_id", "participant_id"]
        )
        batch_op.create_index("ix_payouts_batch", ["batch_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.drop_index("ix_payouts_batch")
        batch_op.drop_constraint("uq_payouts_tx_id_participant_id", type_="unique")
        batch_op.create_unique_constraint(batch_op.f("uq_payouts_tx_id"), ["tx_id"])
        batch_op.drop_constraint("fk_payouts_batch_id_payout_batches", type_="foreignkey")
    # An IOTA payout's signed bytes come back from its batch.
    op.execute(
        "UPDATE payouts SET signed = (SELECT b.signed FROM payout_batches b "
        "WHERE b.id = payouts.batch_id) WHERE ledger = 'iota'"
    )
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.drop_column("batch_id")
    op.drop_index("ix_payout_batches_state", table_name="payout_batches")
    op.drop_table("payout_batches")

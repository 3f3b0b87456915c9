"""wider line item kinds

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 22:00:00

The grid's own lines name their zone (``grid:sharing_link_fee:<zone>``,
``grid:congestion:<zone>``) and zone ids may be 64 characters long: 24 was
too short for sharing's link fee lines on PostgreSQL (SQLite does not check
lengths). 96 holds the longest prefix plus a 64-character zone.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("line_items") as batch:
        batch.alter_column("kind", existing_type=sa.String(length=24), type_=sa.String(length=96))


def downgrade() -> None:
    # Kinds longer than 24 characters do not fit any more: refuse rather than cut them.
    with op.batch_alter_table("line_items") as batch:
        batch.alter_column("kind", existing_type=sa.String(length=96), type_=sa.String(length=24))

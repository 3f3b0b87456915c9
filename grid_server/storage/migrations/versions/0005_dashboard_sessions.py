"""dashboard sessions

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 22:00:00

The operator's dashboard sessions, kept on the server so that logging out
revokes one (the cookie used to be an HMAC of its expiry, valid until then
whatever the operator did).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import grid_server.storage.schema

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dashboard_sessions",
        sa.Column("token_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column(
            "created_at", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "expires_at", grid_server.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_dashboard_sessions")),
    )
    op.create_index(
        "ix_dashboard_sessions_expires", "dashboard_sessions", ["expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_dashboard_sessions_expires", table_name="dashboard_sessions")
    op.drop_table("dashboard_sessions")

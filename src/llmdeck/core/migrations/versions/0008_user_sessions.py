"""users: sessions_valid_from, so that signing out ends a console session on the server

Console sessions are signed cookies that nothing stores; a cookie copied before its user
signed out stayed valid until it expired (7 days). Sessions issued before this moment are
refused.

Revision ID: 0008_user_sessions
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

import llmdeck.core.db

revision = "0008_user_sessions"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "users",
        sa.Column("sessions_valid_from", llmdeck.core.db.UTCDateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("sessions_valid_from")

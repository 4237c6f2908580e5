"""spans: drop the (project_id, trace_id) index the unique (project_id, trace_id, span_id) covers

Every span paid for two inserts at random places (trace ids are random) into indexes that
answer the same lookups: a trace's spans are found through the unique index's leading
columns.

Revision ID: 0007_spans_index
Revises: 0004_observability
Create Date: 2026-11-23
"""

from alembic import op

revision = "0007_spans_index"
down_revision = "0004_observability"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_spans_project_trace", table_name="spans")


def downgrade() -> None:
    op.create_index("ix_spans_project_trace", "spans", ["project_id", "trace_id"], unique=False)

"""evals as jobs: job leases (claimed_by, heartbeat_at, attempts), prompt change counters

Revision ID: 0006_evals_jobs
Revises: 0003_knowledge, 0005_prompts_evals
Create Date: 2026-11-23 17:10:00.000000
"""

import sqlalchemy as sa
from alembic import op

import llmdeck.core.db

revision = "0006_evals_jobs"
# It changes the jobs table (from the knowledge branch) and adds to the prompts branch, so
# it follows both (a `depends_on` from 0001 trips Alembic over the shared base revision).
down_revision = ("0003_knowledge", "0005_prompts_evals")
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=100), nullable=True))
        batch_op.add_column(
            sa.Column("heartbeat_at", llmdeck.core.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
    op.create_table(
        "prompt_changes",
        sa.Column("project_id", sa.String(length=26), nullable=False),
        sa.Column("counter", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_prompt_changes_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_prompt_changes")),
    )


def downgrade() -> None:
    op.drop_table("prompt_changes")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("attempts")
        batch_op.drop_column("heartbeat_at")
        batch_op.drop_column("claimed_by")

"""observability: span session/user/tags, feedback, alerts, drift reports, retention

Revision ID: 0004_observability
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

import llmdeck.core.db

revision = "0004_observability"
down_revision = "0001"
branch_labels = None
depends_on = None

UTC = llmdeck.core.db.UTCDateTime(timezone=True)


def _project_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["project_id"], ["projects.id"], name=f"fk_{table}_project_id_projects", ondelete="CASCADE"
    )


def upgrade() -> None:
    with op.batch_alter_table("spans") as batch:
        batch.add_column(sa.Column("session_id", sa.String(200), nullable=True))
        batch.add_column(sa.Column("user_id", sa.String(200), nullable=True))
        batch.add_column(sa.Column("tags", sa.JSON(), nullable=True))
        batch.create_index("ix_spans_project_session", ["project_id", "session_id"])

    op.create_table(
        "feedback",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("project_id", sa.String(26), nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("span_id", sa.String(16), nullable=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("author", sa.String(200), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        _project_fk("feedback"),
        sa.PrimaryKeyConstraint("id", name="pk_feedback"),
    )
    op.create_index("ix_feedback_project_created", "feedback", ["project_id", "created_at"])
    op.create_index("ix_feedback_project_trace", "feedback", ["project_id", "trace_id"])

    op.create_table(
        "alert_rules",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("project_id", sa.String(26), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("metric", sa.String(50), nullable=False),
        sa.Column("comparison", sa.String(2), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("window_minutes", sa.Integer(), nullable=False),
        sa.Column("webhook_url", sa.String(1000), nullable=False),
        sa.Column("secret_encrypted", sa.String(2000), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("last_value", sa.Float(), nullable=True),
        sa.Column("last_evaluated_at", UTC, nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        _project_fk("alert_rules"),
        sa.PrimaryKeyConstraint("id", name="pk_alert_rules"),
    )
    op.create_index("ix_alert_rules_project_id", "alert_rules", ["project_id"])

    op.create_table(
        "alert_events",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("rule_id", sa.String(26), nullable=False),
        sa.Column("project_id", sa.String(26), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("delivery", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["alert_rules.id"],
            name="fk_alert_events_rule_id_alert_rules",
            ondelete="CASCADE",
        ),
        _project_fk("alert_events"),
        sa.PrimaryKeyConstraint("id", name="pk_alert_events"),
    )
    op.create_index("ix_alert_events_project_created", "alert_events", ["project_id", "created_at"])

    op.create_table(
        "observability_settings",
        sa.Column("project_id", sa.String(26), nullable=False),
        sa.Column("retention_days", sa.Integer(), nullable=True),
        sa.Column("updated_at", UTC, nullable=False),
        _project_fk("observability_settings"),
        sa.PrimaryKeyConstraint("project_id", name="pk_observability_settings"),
    )

    op.create_table(
        "drift_reports",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("project_id", sa.String(26), nullable=False),
        sa.Column("method", sa.String(50), nullable=False),
        sa.Column("baseline_count", sa.Integer(), nullable=False),
        sa.Column("recent_count", sa.Integer(), nullable=False),
        sa.Column("statistic", sa.Float(), nullable=True),
        sa.Column("p_value", sa.Float(), nullable=True),
        sa.Column("drifted", sa.Boolean(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        _project_fk("drift_reports"),
        sa.PrimaryKeyConstraint("id", name="pk_drift_reports"),
    )
    op.create_index(
        "ix_drift_reports_project_created", "drift_reports", ["project_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_table("drift_reports")
    op.drop_table("observability_settings")
    op.drop_table("alert_events")
    op.drop_table("alert_rules")
    op.drop_table("feedback")
    with op.batch_alter_table("spans") as batch:
        batch.drop_index("ix_spans_project_session")
        batch.drop_column("tags")
        batch.drop_column("user_id")
        batch.drop_column("session_id")

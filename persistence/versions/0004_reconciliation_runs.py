"""Reconciliation runs: one row per Reconciliation workflow run, with its full report.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23

`GET /reconciliation/latest` reads the newest row by `run_at`. The run ID is the key, so a retried store
activity writes the same row again (upsert) rather than a second one.
"""
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
CREATE TABLE reconciliation_runs (
    run_id         text PRIMARY KEY,
    workflow_id    text NOT NULL,
    run_at         timestamptz NOT NULL,
    ok             boolean NOT NULL,
    discrepancies  int NOT NULL CHECK (discrepancies >= 0),
    report         jsonb NOT NULL,
    stored_at      timestamptz NOT NULL DEFAULT now()
)
""")
    op.execute("CREATE INDEX reconciliation_runs_run_at ON reconciliation_runs (run_at DESC)")


def downgrade() -> None:
    op.execute("DROP TABLE reconciliation_runs")

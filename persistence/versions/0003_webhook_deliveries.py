"""Webhook deliveries: the idempotency record of each `webhook-id` with the answer it was given.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

The first delivery of a (source, webhook-id) inserts its row as `pending` (insert-first-wins: the primary key
decides among concurrent redeliveries), dispatches, and stores its answer (`done`). A redelivery answers the
stored answer. A delivery that ends 4xx/5xx deletes its pending row: nothing is recorded for it.
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
CREATE TABLE webhook_deliveries (
    source        text NOT NULL,
    webhook_id    text NOT NULL,
    type          text NOT NULL,
    workflow_id   text NOT NULL,
    body_sha256   text NOT NULL,
    status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done')),
    http_status   int,
    response      jsonb,
    received_at   timestamptz NOT NULL DEFAULT now(),
    answered_at   timestamptz,
    PRIMARY KEY (source, webhook_id)
)
""")
    # one statement per call: asyncpg prepares each, and a prepared statement holds one command
    op.execute("CREATE INDEX webhook_deliveries_workflow ON webhook_deliveries (workflow_id)")
    op.execute("CREATE INDEX webhook_deliveries_received ON webhook_deliveries (received_at)")


def downgrade() -> None:
    op.execute("DROP TABLE webhook_deliveries")

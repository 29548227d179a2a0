"""The process registry and late events.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

`process_registry`: one row per process that has ended, written by the process itself as its last step. A
business key found here never opens a second process, whatever Temporal's retention did with the run, and the
read API answers for it from `state` (the final state query) without replaying a history.

`late_events`: every event that came after its process had ended, with its payload, what was done with it
(recorded, applied, case) and the case that tells ops. The key is the event's identity (source + webhook-id).
"""
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
CREATE TABLE process_registry (
    workflow_id    text PRIMARY KEY,
    run_id         text NOT NULL,
    workflow_type  text NOT NULL,
    business_key   text NOT NULL,
    channel        text,
    outcome        text NOT NULL,
    stage          text NOT NULL,
    closed_at      timestamptz NOT NULL,
    state          jsonb NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now()
)
""")
    op.execute("CREATE INDEX process_registry_business_key ON process_registry (business_key)")
    op.execute("""
CREATE TABLE late_events (
    event_id             text PRIMARY KEY,
    process_workflow_id  text NOT NULL,
    late_workflow_id     text NOT NULL,
    type                 text NOT NULL,
    source               text NOT NULL,
    action               text NOT NULL CHECK (action IN ('record', 'case', 'apply')),
    case_id              text,
    payload              jsonb NOT NULL,
    received_at          timestamptz NOT NULL,
    stored_at            timestamptz NOT NULL DEFAULT now(),
    CHECK (action = 'record' OR case_id IS NOT NULL)
)
""")
    op.execute("CREATE INDEX late_events_process ON late_events (process_workflow_id)")


def downgrade() -> None:
    op.execute("DROP TABLE late_events")
    op.execute("DROP TABLE process_registry")

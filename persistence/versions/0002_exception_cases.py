"""The exception-case register: one row per ExceptionCase workflow, kept current by its activities.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

The ExceptionCase workflow is the source of truth; this table answers lists and reports (open cases by kind,
location and age) without scanning Temporal. `location_ids` / `skus` are arrays with GIN indexes so "open
cases at this store" is an index lookup.
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = [
    """
CREATE TABLE exception_cases (
    exception_id         text PRIMARY KEY,
    kind                 text NOT NULL,
    status               text NOT NULL CHECK (status IN ('open', 'resolved')),
    severity             text NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    business_key         text NOT NULL,
    channel              text,
    location_ids         text[] NOT NULL DEFAULT '{}',
    skus                 text[] NOT NULL DEFAULT '{}',
    summary              text NOT NULL,
    details              jsonb NOT NULL DEFAULT '{}'::jsonb,
    process_workflow_id  text NOT NULL,
    process_run_id       text NOT NULL,
    process_type         text,
    events_seen          jsonb NOT NULL DEFAULT '[]'::jsonb,
    opened_at            timestamptz NOT NULL,
    deadline             timestamptz,
    breached_at          timestamptz,
    escalations          int NOT NULL DEFAULT 0 CHECK (escalations >= 0),
    last_escalated_at    timestamptz,
    resolved_at          timestamptz,
    resolved_by          text,
    resolution_note      text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT exception_cases_resolution CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
)""",
    "CREATE INDEX exception_cases_status_kind ON exception_cases (status, kind, opened_at)",
    "CREATE INDEX exception_cases_business_key ON exception_cases (business_key)",
    "CREATE INDEX exception_cases_process ON exception_cases (process_workflow_id)",
    "CREATE INDEX exception_cases_locations ON exception_cases USING gin (location_ids)",
    "CREATE INDEX exception_cases_skus ON exception_cases USING gin (skus)",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS exception_cases")

"""WMS interceptions: a cancel of an order's fulfilment at a location, and the WMS's answer (issue 17, rule 2).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

One row per request key (`kind = 'cancel'`): the stub WMS answers `intercepted` or `already_dispatched` once
and answers the same to a retry of that key. A row of `kind = 'parcel_left'` is the stub's stand-in for the
warehouse floor: the parcel of that order left the location (tests and the demo set it, as a real WMS would
know it), so a later cancel there is answered `already_dispatched`.
"""
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
CREATE TABLE wms_interceptions (
    key           text PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('cancel', 'parcel_left')),
    channel       text NOT NULL,
    order_id      text NOT NULL,
    location_id   text NOT NULL,
    answer        text NOT NULL CHECK (answer IN ('intercepted', 'already_dispatched')),
    reason        text,
    request_hash  text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
)
""")
    op.execute("CREATE INDEX wms_interceptions_order ON wms_interceptions (channel, order_id, location_id)")


def downgrade() -> None:
    op.execute("DROP TABLE wms_interceptions")

"""Returns across processes: what every order line may still be returned and refunded, in PostgreSQL.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

- `shipments.payment_id` and `shipment_lines.amount`: the payment a shipment was charged to and the money
  actually charged for each line in it (to the cent), so a refund goes back to the original payment at the
  price really charged. Both NULL on shipment records written by release 1.0.
- `return_orders`: one row per order that has ever had a return; every authorization and close of a return of
  that order locks it (SELECT ... FOR UPDATE), so two returns of one line can never both pass the
  "authorized <= shipped - authorized by the other returns" check.
- `return_authorizations` / `return_authorization_lines`: each return's authorization (idempotent by key) and,
  per requested line, the units authorized, released again (expired, or authorized but never received when the
  return closed) and refunded (units and money, cumulative per order line across returns).
"""
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UPGRADE = [
    "ALTER TABLE shipments ADD COLUMN payment_id text",
    "ALTER TABLE shipment_lines ADD COLUMN amount numeric CHECK (amount >= 0)",
    """
CREATE TABLE return_orders (
    channel     text NOT NULL,
    order_id    text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, order_id)
)""",
    """
CREATE TABLE return_authorizations (
    key           text PRIMARY KEY,
    return_id     text NOT NULL,
    channel       text NOT NULL,
    order_id      text NOT NULL,
    status        text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    request_hash  text NOT NULL,
    result        jsonb NOT NULL,
    close_result  jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    closed_at     timestamptz,
    FOREIGN KEY (channel, order_id) REFERENCES return_orders (channel, order_id)
)""",
    """
CREATE TABLE return_authorization_lines (
    authorization_key  text NOT NULL REFERENCES return_authorizations (key),
    line_no            int NOT NULL,
    channel            text NOT NULL,
    order_id           text NOT NULL,
    line_id            text NOT NULL,
    sku                text NOT NULL,
    authorized         bigint NOT NULL CHECK (authorized >= 0),
    released           bigint NOT NULL DEFAULT 0 CHECK (released >= 0),
    refunded_units     bigint NOT NULL DEFAULT 0 CHECK (refunded_units >= 0),
    refunded_amount    numeric NOT NULL DEFAULT 0 CHECK (refunded_amount >= 0),
    PRIMARY KEY (authorization_key, line_no),
    CHECK (released + refunded_units <= authorized)
)""",
    "CREATE INDEX return_authorization_lines_order ON return_authorization_lines (channel, order_id, line_id)",
    "CREATE INDEX refunds_payment ON refunds (payment_id)",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS refunds_payment")
    op.execute("DROP TABLE IF EXISTS return_authorization_lines, return_authorizations, return_orders")
    op.execute("ALTER TABLE shipment_lines DROP COLUMN IF EXISTS amount")
    op.execute("ALTER TABLE shipments DROP COLUMN IF EXISTS payment_id")

"""Purchase-order receipts in the stub WMS: `receipts.kind` allows 'purchase_order' beside transfer and return.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

ReceiveToStock records each PO receipt in the WMS like the transfer and the return do. No new table: the
inventory-control processes keep their state in their workflows and write through the ledger and the journal.
(Issue 21; the lead re-chains 0005-0007 at merge.)
"""
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE receipts DROP CONSTRAINT receipts_kind_check")
    op.execute("ALTER TABLE receipts ADD CONSTRAINT receipts_kind_check "
               "CHECK (kind IN ('transfer', 'return', 'purchase_order'))")


def downgrade() -> None:
    op.execute("DELETE FROM receipts WHERE kind = 'purchase_order'")
    op.execute("ALTER TABLE receipts DROP CONSTRAINT receipts_kind_check")
    op.execute("ALTER TABLE receipts ADD CONSTRAINT receipts_kind_check CHECK (kind IN ('transfer', 'return'))")

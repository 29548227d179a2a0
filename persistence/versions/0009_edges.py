"""Safe at the edges: totals the ledger keeps itself (incremental reconciliation), processes a source opened
without their opening event (a per-source limit), the indexes the housekeeping and the windows need, and the
app role's rights narrowed on the append-only tables.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

- `ledger_totals` (sku, location, bucket): the sum of every movement's delta, kept by a trigger on `movements`
  in the movement's own transaction. The reconciliation compares it with `balances` (rows the size of the
  balances, not of the ledger); `retailflow check` also compares it with the movements themselves (full scan).
- `process_holdings` (workflow, sku, location, bucket): units each process holds in reserved / picked /
  in_transit / pending_inspection, kept by the same trigger, rows removed when they reach zero: the orphan search reads what open
  processes hold, not the whole ledger.
- `journal_totals` (legal entity, account, shard): debits minus credits, kept by a trigger on `journal_lines`.
  Every inventory posting of an entity hits the same account, so the total is split over 16 shards (by backend)
  to keep concurrent postings from queueing on one row.
- `unopened_processes` (source, workflow): processes a source's non-opening event started (signal-with-start)
  that have not had their opening event; counted per source at the door (starters/webhooks.py).
- indexes on `created_at` of `movements` and `journal_entries` (the reconciliation's windows) and on the
  delivery records' status (the stale-claim sweep).
- the app role (`retailflow_app`, docker-compose.yml), where it exists, loses UPDATE and DELETE on the
  append-only tables (their triggers refuse them anyway; this keeps it so without them).
"""
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

HELD = "('reserved', 'picked', 'in_transit', 'pending_inspection')"
APPEND_ONLY = ("movement_batches", "movements", "journal_entries", "journal_lines", "captures", "voids", "refunds")
SHARDS = 16

STATEMENTS = [
    """CREATE TABLE ledger_totals (
    sku          text NOT NULL,
    location_id  text NOT NULL,
    bucket       text NOT NULL,
    quantity     bigint NOT NULL,
    PRIMARY KEY (sku, location_id, bucket))""",
    """CREATE TABLE process_holdings (
    workflow_id  text NOT NULL,
    sku          text NOT NULL,
    location_id  text NOT NULL,
    bucket       text NOT NULL,
    quantity     bigint NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, sku, location_id, bucket))""",
    "CREATE INDEX process_holdings_updated ON process_holdings (updated_at)",
    """CREATE TABLE journal_totals (
    legal_entity  text NOT NULL,
    account       text NOT NULL,
    shard         int NOT NULL,
    balance       numeric NOT NULL,
    PRIMARY KEY (legal_entity, account, shard))""",
    """CREATE TABLE unopened_processes (
    source       text NOT NULL,
    workflow_id  text NOT NULL,
    opener       text NOT NULL,
    first_seen   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, workflow_id))""",
    "CREATE INDEX unopened_processes_opener ON unopened_processes (opener)",
    "CREATE INDEX movements_created ON movements (created_at)",
    "CREATE INDEX journal_entries_created ON journal_entries (created_at)",
    "CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (received_at) WHERE status = 'pending'",
    f"""CREATE FUNCTION ledger_totals_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ledger_totals AS t (sku, location_id, bucket, quantity)
    VALUES (NEW.sku, NEW.location_id, NEW.bucket, NEW.delta)
    ON CONFLICT (sku, location_id, bucket) DO UPDATE SET quantity = t.quantity + EXCLUDED.quantity;
    IF NEW.bucket IN {HELD} THEN
        INSERT INTO process_holdings AS h (workflow_id, sku, location_id, bucket, quantity)
        VALUES (NEW.workflow_id, NEW.sku, NEW.location_id, NEW.bucket, NEW.delta)
        ON CONFLICT (workflow_id, sku, location_id, bucket)
        DO UPDATE SET quantity = h.quantity + EXCLUDED.quantity, updated_at = now();
        DELETE FROM process_holdings
         WHERE workflow_id = NEW.workflow_id AND sku = NEW.sku AND location_id = NEW.location_id
           AND bucket = NEW.bucket AND quantity = 0;
    END IF;
    RETURN NULL;
END $$""",
    "CREATE TRIGGER movements_keep_totals AFTER INSERT ON movements FOR EACH ROW EXECUTE FUNCTION ledger_totals_keep()",
    f"""CREATE FUNCTION journal_totals_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO journal_totals AS t (legal_entity, account, shard, balance)
    SELECT e.legal_entity, NEW.account, pg_backend_pid() % {SHARDS}, NEW.debit - NEW.credit
      FROM journal_entries e WHERE e.key = NEW.entry_key
    ON CONFLICT (legal_entity, account, shard) DO UPDATE SET balance = t.balance + EXCLUDED.balance;
    RETURN NULL;
END $$""",
    "CREATE TRIGGER journal_lines_keep_totals AFTER INSERT ON journal_lines FOR EACH ROW "
    "EXECUTE FUNCTION journal_totals_keep()",
    # what the ledger and journal already hold (the tables are locked against writers meanwhile)
    "LOCK TABLE movements, journal_lines IN SHARE MODE",
    """INSERT INTO ledger_totals (sku, location_id, bucket, quantity)
    SELECT sku, location_id, bucket, sum(delta) FROM movements GROUP BY 1, 2, 3""",
    f"""INSERT INTO process_holdings (workflow_id, sku, location_id, bucket, quantity)
    SELECT workflow_id, sku, location_id, bucket, sum(delta) FROM movements WHERE bucket IN {HELD}
     GROUP BY 1, 2, 3, 4 HAVING sum(delta) <> 0""",
    """INSERT INTO journal_totals (legal_entity, account, shard, balance)
    SELECT e.legal_entity, l.account, 0, sum(l.debit - l.credit)
      FROM journal_lines l JOIN journal_entries e ON e.key = l.entry_key GROUP BY 1, 2""",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)
    tables = ", ".join(APPEND_ONLY)
    op.execute(f"""DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'retailflow_app') THEN
        REVOKE UPDATE, DELETE, TRUNCATE ON {tables} FROM retailflow_app;
    END IF;
END $$""")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS movements_keep_totals ON movements")
    op.execute("DROP TRIGGER IF EXISTS journal_lines_keep_totals ON journal_lines")
    op.execute("DROP FUNCTION IF EXISTS ledger_totals_keep(), journal_totals_keep()")
    op.execute("DROP TABLE IF EXISTS ledger_totals, process_holdings, journal_totals, unopened_processes")
    op.execute("DROP INDEX IF EXISTS movements_created, journal_entries_created, webhook_deliveries_pending")

"""The inventory ledger, the journal, and the stub WMS / POS tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-23

The database itself enforces the contract's invariants, whatever the code does:
- a bucket never goes below zero (CHECK on balances.quantity);
- a journal entry is balanced at commit (a DEFERRABLE INITIALLY DEFERRED constraint trigger, so the lines of
  an entry can be inserted one by one inside the transaction);
- the ledger and the journal are append-only (a trigger refuses UPDATE and DELETE; TRUNCATE too).
"""
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BUCKETS = "('available','reserved','picked','in_transit','pending_inspection','damaged','vendor_return')"

UPGRADE = f"""
CREATE TABLE items (
    sku         text PRIMARY KEY,
    name        text NOT NULL,
    barcode     text NOT NULL UNIQUE,
    category    text NOT NULL DEFAULT 'general',
    units       jsonb NOT NULL DEFAULT '{{"EA": 1}}'::jsonb,
    unit_cost   numeric NOT NULL CHECK (unit_cost >= 0),
    price       numeric NOT NULL CHECK (price >= 0),
    currency    text NOT NULL DEFAULT 'USD',
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT items_units_have_ea CHECK ((units ->> 'EA')::int = 1)
);

CREATE TABLE locations (
    location_id   text PRIMARY KEY,
    name          text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('store', 'distribution_center')),
    legal_entity  text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX locations_legal_entity ON locations (legal_entity);

CREATE TABLE balances (
    sku          text NOT NULL REFERENCES items (sku),
    location_id  text NOT NULL REFERENCES locations (location_id),
    bucket       text NOT NULL CHECK (bucket IN {BUCKETS}),
    quantity     bigint NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sku, location_id, bucket),
    CONSTRAINT balances_quantity_not_negative CHECK (quantity >= 0)
);
CREATE INDEX balances_location ON balances (location_id);

-- One row per transaction key: the idempotency record and the first call's result.
CREATE TABLE movement_batches (
    key           text PRIMARY KEY,
    kind          text NOT NULL,
    request_hash  text NOT NULL,
    result        jsonb NOT NULL,
    workflow_id   text NOT NULL,
    run_id        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- The append-only ledger: one row per bucket delta of each line of each movement.
CREATE TABLE movements (
    id           bigserial PRIMARY KEY,
    key          text NOT NULL REFERENCES movement_batches (key),
    line         int NOT NULL,
    kind         text NOT NULL,
    sku          text NOT NULL REFERENCES items (sku),
    location_id  text NOT NULL REFERENCES locations (location_id),
    bucket       text NOT NULL CHECK (bucket IN {BUCKETS}),
    delta        bigint NOT NULL CHECK (delta <> 0),
    reason       text NOT NULL,
    reason_code  text,
    workflow_id  text NOT NULL,
    run_id       text NOT NULL,
    reference    text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT movements_once UNIQUE (key, line, location_id, bucket)
);
CREATE INDEX movements_sku_location ON movements (sku, location_id);
CREATE INDEX movements_workflow ON movements (workflow_id);
CREATE INDEX movements_reference ON movements (reference);

-- Journal: one entry per legal entity and source transaction; `source_key` is the movement or financial key.
CREATE TABLE journal_entries (
    key           text PRIMARY KEY,
    source_key    text NOT NULL,
    source_kind   text NOT NULL,
    legal_entity  text NOT NULL,
    currency      text NOT NULL,
    memo          text NOT NULL,
    request_hash  text,
    workflow_id   text,
    run_id        text,
    reference     text,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX journal_entries_source ON journal_entries (source_key);
CREATE INDEX journal_entries_entity ON journal_entries (legal_entity);

CREATE TABLE journal_lines (
    id         bigserial PRIMARY KEY,
    entry_key  text NOT NULL REFERENCES journal_entries (key),
    line       int NOT NULL,
    account    text NOT NULL,
    debit      numeric NOT NULL DEFAULT 0 CHECK (debit >= 0),
    credit     numeric NOT NULL DEFAULT 0 CHECK (credit >= 0),
    sku        text,
    location_id text,
    CONSTRAINT journal_lines_one_side CHECK ((debit = 0) <> (credit = 0)),
    CONSTRAINT journal_lines_once UNIQUE (entry_key, line)
);
CREATE INDEX journal_lines_account ON journal_lines (account);

CREATE FUNCTION journal_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    k text;
    n int;
    d numeric;
    c numeric;
BEGIN
    IF TG_TABLE_NAME = 'journal_entries' THEN
        k := NEW.key;
    ELSE
        k := NEW.entry_key;
    END IF;
    SELECT count(*), COALESCE(sum(debit), 0), COALESCE(sum(credit), 0) INTO n, d, c
      FROM journal_lines WHERE entry_key = k;
    IF n < 2 OR d <> c THEN
        RAISE EXCEPTION 'journal entry % is unbalanced: % lines, debits % <> credits %', k, n, d, c
            USING ERRCODE = '23514', CONSTRAINT = 'journal_entry_balanced';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER journal_entry_balanced AFTER INSERT ON journal_entries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION journal_entry_balanced();
CREATE CONSTRAINT TRIGGER journal_lines_balanced AFTER INSERT ON journal_lines
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION journal_entry_balanced();

CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = '42501';
END $$;

-- POS / payments: an authorization, and captures, voids and refunds against it, each by its own key.
CREATE TABLE payments (
    payment_id         text PRIMARY KEY,
    authorized_amount  numeric NOT NULL CHECK (authorized_amount >= 0),
    currency           text NOT NULL,
    voided_at          timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE captures (
    key           text PRIMARY KEY,
    payment_id    text NOT NULL REFERENCES payments (payment_id),
    amount        numeric NOT NULL CHECK (amount > 0),
    currency      text NOT NULL,
    reference     text NOT NULL,
    request_hash  text NOT NULL,
    result        jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX captures_payment ON captures (payment_id);

CREATE TABLE voids (
    key           text PRIMARY KEY,
    payment_id    text NOT NULL,
    amount        numeric NOT NULL CHECK (amount >= 0),
    reason        text NOT NULL,
    request_hash  text NOT NULL,
    result        jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX voids_payment ON voids (payment_id);

CREATE TABLE refunds (
    key               text PRIMARY KEY,
    payment_id        text,
    return_id         text NOT NULL,
    amount            numeric NOT NULL CHECK (amount > 0),
    currency          text NOT NULL,
    refund_reference  text NOT NULL UNIQUE,
    request_hash      text NOT NULL,
    result            jsonb NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refunds_return ON refunds (return_id);

-- WMS: pick tasks, customer shipments (priced lines, for the returns lookup), transfer shipments, receipts.
CREATE TABLE pick_tasks (
    key           text PRIMARY KEY,
    channel       text NOT NULL,
    order_id      text NOT NULL,
    location_id   text NOT NULL,
    lines         jsonb NOT NULL,
    request_hash  text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pick_tasks_order ON pick_tasks (channel, order_id);

CREATE TABLE shipments (
    key              text PRIMARY KEY,
    shipment_id      text NOT NULL,
    channel          text NOT NULL,
    order_id         text NOT NULL,
    location_id      text NOT NULL,
    carrier          text,
    tracking_number  text,
    request_hash     text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX shipments_order ON shipments (channel, order_id);

CREATE TABLE shipment_lines (
    shipment_key  text NOT NULL REFERENCES shipments (key),
    line_id       text NOT NULL,
    sku           text NOT NULL,
    quantity      bigint NOT NULL CHECK (quantity > 0),
    unit_price    numeric NOT NULL CHECK (unit_price >= 0),
    currency      text NOT NULL,
    PRIMARY KEY (shipment_key, line_id)
);

CREATE TABLE transfer_shipments (
    key               text PRIMARY KEY,
    transfer_id       text NOT NULL,
    from_location_id  text NOT NULL,
    to_location_id    text NOT NULL,
    lines             jsonb NOT NULL,
    request_hash      text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX transfer_shipments_transfer ON transfer_shipments (transfer_id);

CREATE TABLE receipts (
    key           text PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('transfer', 'return')),
    reference     text NOT NULL,
    location_id   text NOT NULL,
    lines         jsonb NOT NULL,
    request_hash  text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX receipts_reference ON receipts (kind, reference);
"""

APPEND_ONLY = ("movement_batches", "movements", "journal_entries", "journal_lines", "captures", "voids", "refunds")


def statements(script: str) -> list[str]:
    """Split a script into single statements (asyncpg prepares each one), keeping $$ bodies whole."""
    out: list[str] = []
    current: list[str] = []
    quoted = False
    for line in script.splitlines():
        if line.strip().startswith("--") and not current:
            continue
        current.append(line)
        quoted ^= line.count("$$") % 2 == 1
        if not quoted and line.rstrip().endswith(";"):
            out.append("\n".join(current).strip())
            current = []
    if "".join(current).strip():
        out.append("\n".join(current).strip())
    return out


def upgrade() -> None:
    for statement in statements(UPGRADE):
        op.execute(statement)
    for table in APPEND_ONLY:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION refuse_change()"
        )


def downgrade() -> None:
    op.execute(
        "DROP TABLE IF EXISTS receipts, transfer_shipments, shipment_lines, shipments, pick_tasks, refunds, voids, "
        "captures, payments, journal_lines, journal_entries, movements, movement_batches, balances, locations, items "
        "CASCADE"
    )
    op.execute("DROP FUNCTION IF EXISTS journal_entry_balanced(), refuse_change()")

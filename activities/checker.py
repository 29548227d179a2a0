"""The invariant checker: what must hold of the ledger and the journal at every commit.

Used by the tests, by `retailflow check` (prints the report as JSON, exits non-zero on a violation) and by the
reconciliation. All checks read one REPEATABLE READ snapshot, so a busy system is checked consistently: a
movement commits balances, ledger rows and journal together, hence every snapshot must satisfy every check.
"""
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.journal import BUCKET_ACCOUNT, INVENTORY_ACCOUNTS, INVENTORY_CONTROL_ACCOUNTS, Account
from persistence.engine import create_engine

MAX_SAMPLES = 20  # violations listed per check; `violations` counts them all


class CheckResult(BaseModel):
    name: str
    description: str
    ok: bool
    violations: int
    samples: list[dict[str, Any]] = Field(default_factory=list)


class CheckReport(BaseModel):
    ok: bool
    checked_at: datetime
    checks: list[CheckResult]
    totals: dict[str, int] = Field(default_factory=dict)

    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.ok]


_BUCKET_ACCOUNT_SQL = "CASE b.bucket " + " ".join(
    f"WHEN '{bucket.value}' THEN '{account.value}'" for bucket, account in BUCKET_ACCOUNT.items()
) + " END"
_INVENTORY_ACCOUNTS_SQL = ", ".join(f"'{a.value}'" for a in sorted(INVENTORY_ACCOUNTS))
_CHART_SQL = ", ".join(f"'{a.value}'" for a in Account)

# Inventory control's accruals and variances per legal entity (debit minus credit), for the reconciliation report.
ACCRUALS_SQL = f"""
    SELECT e.legal_entity, l.account, sum(l.debit - l.credit) AS balance
      FROM journal_lines l JOIN journal_entries e ON e.key = l.entry_key
     WHERE l.account IN ({", ".join(f"'{a.value}'" for a in INVENTORY_CONTROL_ACCOUNTS)})
     GROUP BY 1, 2 ORDER BY 1, 2"""

# Operational and financial inventory side by side, per legal entity and inventory account: the checker compares
# them, the reconciliation reports them.
ENTITY_INVENTORY_SQL = f"""
    WITH ledger AS (
        SELECT loc.legal_entity, {_BUCKET_ACCOUNT_SQL} AS account, sum(b.quantity) AS units,
               sum(b.quantity * i.unit_cost) AS value
          FROM balances b JOIN items i ON i.sku = b.sku JOIN locations loc ON loc.location_id = b.location_id
         GROUP BY 1, 2),
      journal AS (
        SELECT e.legal_entity, l.account, sum(l.debit - l.credit) AS value
          FROM journal_lines l JOIN journal_entries e ON e.key = l.entry_key
         WHERE l.account IN ({_INVENTORY_ACCOUNTS_SQL})
         GROUP BY 1, 2)
    SELECT COALESCE(ledger.legal_entity, journal.legal_entity) AS legal_entity,
           COALESCE(ledger.account, journal.account) AS account,
           COALESCE(ledger.units, 0) AS units, COALESCE(ledger.value, 0) AS units_at_cost,
           COALESCE(journal.value, 0) AS journal_balance
      FROM ledger FULL JOIN journal
        ON journal.legal_entity = ledger.legal_entity AND journal.account = ledger.account"""

# The same figures from the totals the ledger and the journal keep themselves (0009): sized by balances and
# accounts, not by the ledger.
ENTITY_INVENTORY_FAST_SQL = ENTITY_INVENTORY_SQL.replace(
    f"""SELECT e.legal_entity, l.account, sum(l.debit - l.credit) AS value
          FROM journal_lines l JOIN journal_entries e ON e.key = l.entry_key
         WHERE l.account IN ({_INVENTORY_ACCOUNTS_SQL})
         GROUP BY 1, 2""",
    f"""SELECT legal_entity, account, sum(balance) AS value FROM journal_totals
         WHERE account IN ({_INVENTORY_ACCOUNTS_SQL})
         GROUP BY 1, 2""")
assert ENTITY_INVENTORY_FAST_SQL != ENTITY_INVENTORY_SQL

CHECKS: list[tuple[str, str, str]] = [
    ("no_negative_bucket", "no bucket of any SKU at any location is below zero",
     "SELECT sku, location_id, bucket, quantity FROM balances WHERE quantity < 0 ORDER BY 1, 2, 3"),
    ("balances_match_ledger", "every balance equals the sum of its movement deltas",
     """SELECT COALESCE(b.sku, m.sku) AS sku, COALESCE(b.location_id, m.location_id) AS location_id,
               COALESCE(b.bucket, m.bucket) AS bucket, COALESCE(b.quantity, 0) AS balance,
               COALESCE(m.total, 0) AS ledger
          FROM balances b
          FULL JOIN (SELECT sku, location_id, bucket, sum(delta) AS total FROM movements
                      GROUP BY sku, location_id, bucket) m
            ON m.sku = b.sku AND m.location_id = b.location_id AND m.bucket = b.bucket
         WHERE COALESCE(b.quantity, 0) <> COALESCE(m.total, 0)
         ORDER BY 1, 2, 3"""),
    ("journal_entries_balanced", "every journal entry has lines and its debits equal its credits",
     """SELECT e.key, e.legal_entity, count(l.id) AS lines, COALESCE(sum(l.debit), 0) AS debits,
               COALESCE(sum(l.credit), 0) AS credits
          FROM journal_entries e LEFT JOIN journal_lines l ON l.entry_key = e.key
         GROUP BY e.key, e.legal_entity
        HAVING count(l.id) < 2 OR COALESCE(sum(l.debit), 0) <> COALESCE(sum(l.credit), 0)
         ORDER BY 1"""),
    ("inventory_matches_journal",
     "per legal entity and inventory account, the journal balance equals units x standard unit cost",
     f"""SELECT legal_entity, account, units_at_cost, journal_balance FROM ({ENTITY_INVENTORY_SQL}) figures
         WHERE units_at_cost <> journal_balance
         ORDER BY 1, 2"""),
    ("journal_accounts_known", "every journal line posts to an account of the chart of accounts",
     f"""SELECT l.entry_key, l.line, l.account FROM journal_lines l
         WHERE l.account NOT IN ({_CHART_SQL}) ORDER BY 1, 2"""),
    ("grni_is_a_credit", "per purchase order, goods received not invoiced is a credit (received at PO cost, never "
                         "more released than accrued)",
     """SELECT e.legal_entity, e.reference, sum(l.debit - l.credit) AS balance
          FROM journal_lines l JOIN journal_entries e ON e.key = l.entry_key
         WHERE l.account = 'goods_received_not_invoiced' AND e.reference IS NOT NULL
         GROUP BY 1, 2 HAVING sum(l.debit - l.credit) > 0 ORDER BY 1, 2"""),
    ("vendor_receivable_not_negative", "per return to vendor, the vendor credit receivable is never cleared beyond "
                                       "what was returned (a differing credit goes to the variance account)",
     """SELECT e.legal_entity, e.reference, sum(l.debit - l.credit) AS balance
          FROM journal_lines l JOIN journal_entries e ON e.key = l.entry_key
         WHERE l.account = 'vendor_receivable' AND e.reference IS NOT NULL
         GROUP BY 1, 2 HAVING sum(l.debit - l.credit) < 0 ORDER BY 1, 2"""),
    ("keys_applied_once", "no transaction key was applied twice (ledger rows or journal entries)",
     """SELECT 'movement' AS what, key, line::text AS part, location_id || '/' || bucket AS target, count(*) AS times
          FROM movements GROUP BY key, line, location_id, bucket HAVING count(*) > 1
        UNION ALL
        SELECT 'movement_without_batch', m.key, NULL, NULL, count(*) FROM movements m
          LEFT JOIN movement_batches mb ON mb.key = m.key WHERE mb.key IS NULL GROUP BY m.key
        UNION ALL
        SELECT 'journal', source_key, legal_entity, currency, count(*)
          FROM journal_entries GROUP BY source_key, legal_entity, currency HAVING count(*) > 1
         ORDER BY 1, 2"""),
    # issue 17 rule 1 (returns across processes)
    ("refunds_within_captures", "per payment, the refunds tied to it never exceed what it captured",
     """SELECT r.payment_id, r.refunded, COALESCE(c.captured, 0) AS captured
          FROM (SELECT payment_id, sum(amount) AS refunded FROM refunds WHERE payment_id IS NOT NULL
                 GROUP BY payment_id) r
          LEFT JOIN (SELECT payment_id, sum(amount) AS captured FROM captures GROUP BY payment_id) c
            ON c.payment_id = r.payment_id
         WHERE r.refunded > COALESCE(c.captured, 0)
         ORDER BY 1"""),
    ("returns_within_shipped",
     "per order line, the units held by its returns (authorized, not released) never exceed what shipped",
     """SELECT a.channel, a.order_id, a.line_id, a.held, COALESCE(s.shipped, 0) AS shipped
          FROM (SELECT channel, order_id, line_id, sum(authorized - released) AS held
                  FROM return_authorization_lines GROUP BY channel, order_id, line_id) a
          LEFT JOIN (SELECT sh.channel, sh.order_id, sl.line_id, sum(sl.quantity) AS shipped
                       FROM shipments sh JOIN shipment_lines sl ON sl.shipment_key = sh.key
                      GROUP BY sh.channel, sh.order_id, sl.line_id) s
            ON s.channel = a.channel AND s.order_id = a.order_id AND s.line_id = a.line_id
         WHERE a.held > COALESCE(s.shipped, 0)
         ORDER BY 1, 2, 3"""),
]


# Full mode also proves the kept totals against what they summarise (a full scan: `retailflow check`).
TOTALS_CHECKS: list[tuple[str, str, str]] = [
    ("ledger_totals_match_movements", "the ledger's kept totals equal the sum of its movements",
     """SELECT COALESCE(t.sku, m.sku) AS sku, COALESCE(t.location_id, m.location_id) AS location_id,
               COALESCE(t.bucket, m.bucket) AS bucket, COALESCE(t.quantity, 0) AS kept, COALESCE(m.total, 0) AS ledger
          FROM ledger_totals t
          FULL JOIN (SELECT sku, location_id, bucket, sum(delta) AS total FROM movements GROUP BY 1, 2, 3) m
            ON m.sku = t.sku AND m.location_id = t.location_id AND m.bucket = t.bucket
         WHERE COALESCE(t.quantity, 0) <> COALESCE(m.total, 0)
         ORDER BY 1, 2, 3"""),
    ("journal_totals_match_lines", "the journal's kept totals equal the sum of its lines",
     """SELECT COALESCE(t.legal_entity, j.legal_entity) AS legal_entity, COALESCE(t.account, j.account) AS account,
               COALESCE(t.balance, 0) AS kept, COALESCE(j.balance, 0) AS journal
          FROM (SELECT legal_entity, account, sum(balance) AS balance FROM journal_totals GROUP BY 1, 2) t
          FULL JOIN (SELECT e.legal_entity, l.account, sum(l.debit - l.credit) AS balance
                       FROM journal_lines l JOIN journal_entries e ON e.key = l.entry_key GROUP BY 1, 2) j
            ON j.legal_entity = t.legal_entity AND j.account = t.account
         WHERE COALESCE(t.balance, 0) <> COALESCE(j.balance, 0)
         ORDER BY 1, 2"""),
]

# Incremental: the same five checks (same names), reading the kept totals and only the journal entries written
# since `:since` (the previous run, less a margin longer than any transaction). What is older was checked by an
# earlier run and is append-only; the database refuses an unbalanced entry or a key applied twice at commit,
# so these checks watch the guards rather than replace them.
INCREMENTAL_CHECKS: list[tuple[str, str, str]] = [
    CHECKS[0],
    ("balances_match_ledger", "every balance equals the ledger's total of its movement deltas",
     """SELECT COALESCE(b.sku, t.sku) AS sku, COALESCE(b.location_id, t.location_id) AS location_id,
               COALESCE(b.bucket, t.bucket) AS bucket, COALESCE(b.quantity, 0) AS balance,
               COALESCE(t.quantity, 0) AS ledger
          FROM balances b
          FULL JOIN ledger_totals t ON t.sku = b.sku AND t.location_id = b.location_id AND t.bucket = b.bucket
         WHERE COALESCE(b.quantity, 0) <> COALESCE(t.quantity, 0)
         ORDER BY 1, 2, 3"""),
    ("journal_entries_balanced", "every journal entry has lines and its debits equal its credits",
     """SELECT e.key, e.legal_entity, count(l.id) AS lines, COALESCE(sum(l.debit), 0) AS debits,
               COALESCE(sum(l.credit), 0) AS credits
          FROM journal_entries e LEFT JOIN journal_lines l ON l.entry_key = e.key
         WHERE e.created_at >= :since
         GROUP BY e.key, e.legal_entity
        HAVING count(l.id) < 2 OR COALESCE(sum(l.debit), 0) <> COALESCE(sum(l.credit), 0)
         ORDER BY 1"""),
    ("inventory_matches_journal",
     "per legal entity and inventory account, the journal balance equals units x standard unit cost",
     f"""SELECT legal_entity, account, units_at_cost, journal_balance FROM ({ENTITY_INVENTORY_FAST_SQL}) figures
         WHERE units_at_cost <> journal_balance
         ORDER BY 1, 2"""),
    ("keys_applied_once", "no transaction key was applied twice (ledger rows or journal entries)",
     """SELECT 'movement' AS what, key, line::text AS part, location_id || '/' || bucket AS target, count(*) AS times
          FROM movements WHERE created_at >= :since
         GROUP BY key, line, location_id, bucket HAVING count(*) > 1
        UNION ALL
        SELECT 'journal', e.source_key, e.legal_entity, e.currency, count(*)
          FROM journal_entries e JOIN journal_entries o
            ON o.source_key = e.source_key AND o.legal_entity = e.legal_entity AND o.currency = e.currency
         WHERE e.created_at >= :since
         GROUP BY e.key, e.source_key, e.legal_entity, e.currency HAVING count(*) > 1
         ORDER BY 1, 2"""),
]


# The business rules over their own (small) tables run in full in the incremental check too: what was refunded,
# returned, accrued or credited is never more than the rule allows, whenever it was posted.
BUSINESS_CHECKS = ("refunds_within_captures", "returns_within_shipped", "journal_accounts_known",
                   "grni_is_a_credit", "vendor_receivable_not_negative")
INCREMENTAL_CHECKS += [c for c in CHECKS if c[0] in BUSINESS_CHECKS]


def _plain(value: object) -> object:
    return str(value) if isinstance(value, Decimal) else value


async def check_connection(conn: AsyncConnection, *, since: datetime | None = None,
                           progress: Callable[[str], None] | None = None) -> CheckReport:
    """Run every check inside the caller's transaction (set it REPEATABLE READ for a consistent snapshot).

    `since=None`: the full check (every movement and journal line, and the kept totals proved against them).
    `since`: incremental (see INCREMENTAL_CHECKS). `progress(name)` is called before each check (a heartbeat)."""
    results = []
    checks = CHECKS + TOTALS_CHECKS if since is None else INCREMENTAL_CHECKS
    for name, description, sql in checks:
        if progress is not None:
            progress(name)
        rows = (await conn.execute(text(sql), {"since": since} if since is not None else {})).mappings().all()
        results.append(CheckResult(
            name=name, description=description, ok=not rows, violations=len(rows),
            samples=[{k: _plain(v) for k, v in row.items()} for row in rows[:MAX_SAMPLES]],
        ))
    totals = {}
    for table in ("items", "locations", "balances", "movement_batches", "movements", "journal_entries",
                  "journal_lines"):
        totals[table] = int(await conn.scalar(text(f"SELECT count(*) FROM {table}")) or 0)
    return CheckReport(ok=all(r.ok for r in results), checked_at=datetime.now(UTC), checks=results, totals=totals)


async def check(database_url: str) -> CheckReport:
    engine = create_engine(database_url, pool_size=1, max_overflow=0, statement_timeout=None)  # a full scan
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                await conn.execute(text("SET TRANSACTION READ ONLY"))
                return await check_connection(conn)
    finally:
        await engine.dispose()


async def cli(database_url: str) -> int:
    """`retailflow check`: print the report as JSON; the exit code is 1 on any violation."""
    report = await check(database_url)
    print(report.model_dump_json(indent=2))
    return 0 if report.ok else 1

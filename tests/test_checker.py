"""The invariant checker finds what is planted. Each violation is planted inside a transaction that the
checker reads (check_connection) and that is then rolled back, so every case starts from a clean, seeded ledger.
Planting needs what the application can never do: dropping a constraint, or disabling triggers."""
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.checker import check, check_connection, cli
from devtools.seed import seed
from persistence.engine import create_engine

SKU_AT = "(SELECT sku FROM balances WHERE location_id = 'DC-EAST' AND bucket = 'available' ORDER BY sku LIMIT 1)"

PLANTS: dict[str, tuple[list[str], set[str]]] = {
    "a balance drifted from the ledger": (
        [f"UPDATE balances SET quantity = quantity + 1 WHERE location_id = 'DC-EAST' AND bucket = 'available' "
         f"AND sku = {SKU_AT}"],
        {"balances_match_ledger", "inventory_matches_journal"},
    ),
    "a negative bucket": (
        ["ALTER TABLE balances DROP CONSTRAINT balances_quantity_not_negative",
         "SET session_replication_role = replica",
         "INSERT INTO movements (key, line, kind, sku, location_id, bucket, delta, reason, workflow_id, run_id) "
         f"VALUES ('seed:opening:DC-EAST', 99, 'adjust', {SKU_AT}, 'DC-EAST', 'damaged', -1, 'x', 'x', 'x')",
         f"INSERT INTO balances (sku, location_id, bucket, quantity) VALUES ({SKU_AT}, 'DC-EAST', 'damaged', -1)"],
        # the movement went in with triggers off: the ledger's kept totals never saw it
        {"no_negative_bucket", "inventory_matches_journal", "ledger_totals_match_movements"},
    ),
    "an unbalanced journal entry": (
        ["SET session_replication_role = replica",
         "INSERT INTO journal_entries (key, source_key, source_kind, legal_entity, currency, memo) "
         "VALUES ('bad', 'bad', 'manual', 'RF-EAST', 'USD', 'one-legged')",
         "INSERT INTO journal_lines (entry_key, line, account, debit) VALUES ('bad', 0, 'cash_clearing', 10)"],
        {"journal_entries_balanced", "journal_totals_match_lines"},
    ),
    "inventory posted without units": (
        ["INSERT INTO journal_entries (key, source_key, source_kind, legal_entity, currency, memo) "
         "VALUES ('phantom', 'phantom', 'manual', 'RF-WEST', 'USD', 'phantom stock')",
         "INSERT INTO journal_lines (entry_key, line, account, debit) VALUES ('phantom', 0, 'inventory', 10)",
         "INSERT INTO journal_lines (entry_key, line, account, credit) VALUES ('phantom', 1, 'shrink', 10)"],
        {"inventory_matches_journal"},
    ),
    "a key applied twice": (
        ["ALTER TABLE movements DROP CONSTRAINT movements_once",
         "INSERT INTO movements (key, line, kind, sku, location_id, bucket, delta, reason, workflow_id, run_id) "
         "SELECT key, line, kind, sku, location_id, bucket, delta, reason, workflow_id, run_id FROM movements "
         "WHERE key = 'seed:opening:ST-NYC' AND line = 0",
         "INSERT INTO journal_entries (key, source_key, source_kind, legal_entity, currency, memo) "
         "VALUES ('seed:opening:ST-NYC@RF-EAST#2', 'seed:opening:ST-NYC', 'receipt', 'RF-EAST', 'USD', 'again')",
         "INSERT INTO journal_lines (entry_key, line, account, debit) VALUES ('seed:opening:ST-NYC@RF-EAST#2', 0, "
         "'cash_clearing', 1)",
         "INSERT INTO journal_lines (entry_key, line, account, credit) VALUES ('seed:opening:ST-NYC@RF-EAST#2', 1, "
         "'receivable', 1)"],
        {"keys_applied_once", "balances_match_ledger"},
    ),
    "a refund beyond what its payment captured": (
        ["INSERT INTO payments (payment_id, authorized_amount, currency) VALUES ('pay-x', 10, 'USD')",
         "INSERT INTO captures (key, payment_id, amount, currency, reference, request_hash, result) "
         "VALUES ('cap-x', 'pay-x', 10, 'USD', 's-x', 'h', '{}')",
         "INSERT INTO refunds (key, payment_id, return_id, amount, currency, refund_reference, request_hash, result) "
         "VALUES ('rf-x', 'pay-x', 'R-x', 10.01, 'USD', 'rf_x', 'h', '{}')"],
        {"refunds_within_captures"},
    ),
    "a line returned more often than it shipped": (
        ["INSERT INTO shipments (key, shipment_id, channel, order_id, location_id, request_hash) "
         "VALUES ('sh-x', 's-x', 'web', 'O-x', 'DC-EAST', 'h')",
         "INSERT INTO shipment_lines (shipment_key, line_id, sku, quantity, unit_price, currency) "
         "VALUES ('sh-x', 'l1', 'X', 1, 5, 'USD')",
         "INSERT INTO return_orders (channel, order_id) VALUES ('web', 'O-x')",
         "INSERT INTO return_authorizations (key, return_id, channel, order_id, request_hash, result) "
         "VALUES ('ra-1', 'R-1', 'web', 'O-x', 'h', '{}'), ('ra-2', 'R-2', 'web', 'O-x', 'h', '{}')",
         "INSERT INTO return_authorization_lines (authorization_key, line_no, channel, order_id, line_id, sku, "
         "authorized) VALUES ('ra-1', 0, 'web', 'O-x', 'l1', 'X', 1), ('ra-2', 0, 'web', 'O-x', 'l1', 'X', 1)"],
        {"returns_within_shipped"},
    ),
    "an account outside the chart": (
        ["INSERT INTO journal_entries (key, source_key, source_kind, legal_entity, currency, memo) "
         "VALUES ('stray', 'stray', 'manual', 'RF-EAST', 'USD', 'misc')",
         "INSERT INTO journal_lines (entry_key, line, account, debit) VALUES ('stray', 0, 'suspense', 5)",
         "INSERT INTO journal_lines (entry_key, line, account, credit) VALUES ('stray', 1, 'cash_clearing', 5)"],
        {"journal_accounts_known"},
    ),
    "GRNI released beyond what a PO accrued": (
        ["INSERT INTO journal_entries (key, source_key, source_kind, legal_entity, currency, memo, reference) "
         "VALUES ('grni', 'grni', 'price_variance_favourable', 'RF-EAST', 'USD', 'too much', 'PO-X')",
         "INSERT INTO journal_lines (entry_key, line, account, debit) "
         "VALUES ('grni', 0, 'goods_received_not_invoiced', 5)",
         "INSERT INTO journal_lines (entry_key, line, account, credit) VALUES ('grni', 1, 'purchase_price_variance', 5)"],
        {"grni_is_a_credit"},
    ),
    "a vendor credit cleared beyond the receivable": (
        ["INSERT INTO journal_entries (key, source_key, source_kind, legal_entity, currency, memo, reference) "
         "VALUES ('vc', 'vc', 'vendor_credit', 'RF-WEST', 'USD', 'too much', 'RTV-X')",
         "INSERT INTO journal_lines (entry_key, line, account, debit) VALUES ('vc', 0, 'accounts_payable', 5)",
         "INSERT INTO journal_lines (entry_key, line, account, credit) VALUES ('vc', 1, 'vendor_receivable', 5)"],
        {"vendor_receivable_not_negative"},
    ),
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    await seed(database_url)
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def test_a_clean_ledger_passes(engine: AsyncEngine, database_url: str, capsys: pytest.CaptureFixture) -> None:
    report = await check(database_url)
    assert report.ok and {c.name for c in report.checks} == {
        "no_negative_bucket", "balances_match_ledger", "journal_entries_balanced", "inventory_matches_journal",
        "keys_applied_once", "refunds_within_captures", "returns_within_shipped", "journal_accounts_known",
        "grni_is_a_credit", "vendor_receivable_not_negative", "ledger_totals_match_movements",
        "journal_totals_match_lines"}
    assert await cli(database_url) == 0
    assert '"ok": true' in capsys.readouterr().out


@pytest.mark.parametrize("plant", list(PLANTS))
async def test_planted_violations_are_found(engine: AsyncEngine, plant: str) -> None:
    statements, expected = PLANTS[plant]
    async with engine.connect() as conn:
        transaction = await conn.begin()
        try:
            for statement in statements:
                await conn.execute(text(statement))
            report = await check_connection(conn)
        finally:
            await transaction.rollback()
    failed = {c.name for c in report.failed()}
    assert failed == expected, report.model_dump_json(indent=1)
    assert not report.ok and all(c.samples for c in report.failed())


# The reconciliation's incremental check (kept totals, entries since the previous run) finds the same plants.
INCREMENTAL = {
    "a balance drifted from the ledger": {"balances_match_ledger", "inventory_matches_journal"},
    "a negative bucket": {"no_negative_bucket", "balances_match_ledger", "inventory_matches_journal"},
    "an unbalanced journal entry": {"journal_entries_balanced"},
    "inventory posted without units": {"inventory_matches_journal"},
    "a key applied twice": {"keys_applied_once", "balances_match_ledger"},
    "a refund beyond what its payment captured": {"refunds_within_captures"},
    "a line returned more often than it shipped": {"returns_within_shipped"},
    "an account outside the chart": {"journal_accounts_known"},
    "GRNI released beyond what a PO accrued": {"grni_is_a_credit"},
    "a vendor credit cleared beyond the receivable": {"vendor_receivable_not_negative"},
}


@pytest.mark.parametrize("plant", list(PLANTS))
async def test_planted_violations_are_found_incrementally(engine: AsyncEngine, plant: str) -> None:
    from datetime import UTC, datetime, timedelta

    statements, _ = PLANTS[plant]
    async with engine.connect() as conn:
        transaction = await conn.begin()
        try:
            clean = await check_connection(conn, since=datetime.now(UTC) - timedelta(hours=1))
            for statement in statements:
                await conn.execute(text(statement))
            report = await check_connection(conn, since=datetime.now(UTC) - timedelta(hours=1))
        finally:
            await transaction.rollback()
    assert clean.ok
    assert {c.name for c in report.failed()} == INCREMENTAL[plant], report.model_dump_json(indent=1)


async def test_cli_exits_non_zero_on_a_violation(engine: AsyncEngine, database_url: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(PLANTS["a balance drifted from the ledger"][0][0]))
    try:
        assert await cli(database_url) == 1
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(PLANTS["a balance drifted from the ledger"][0][0].replace("+ 1", "- 1")))
    assert (await check(database_url)).ok

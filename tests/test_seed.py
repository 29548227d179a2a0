"""`retailflow seed`: the demo network and opening stock go in through the ledger, once."""
import pytest
from sqlalchemy import text

from devtools.catalog import ITEMS, LOCATIONS, opening_movements
from devtools.seed import seed
from domain.items import LocationKind
from persistence.engine import create_engine
from tests.support import assert_checker_ok


async def test_seeding_twice_changes_nothing_and_opens_a_balanced_journal(database_url: str) -> None:
    first = await seed(database_url)
    assert first.movements_applied == len(opening_movements()) and first.movements_already_applied == 0
    before = await assert_checker_ok(database_url)

    second = await seed(database_url)
    assert second.master_rows_added == 0 and second.movements_applied == 0
    assert (await assert_checker_ok(database_url)).totals == before.totals

    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            inventory = dict((await conn.execute(text(
                "SELECT e.legal_entity, sum(l.debit - l.credit) FROM journal_lines l JOIN journal_entries e "
                "ON e.key = l.entry_key WHERE l.account = 'inventory' GROUP BY 1"))).all())
            units_at_cost = dict((await conn.execute(text(
                "SELECT loc.legal_entity, sum(b.quantity * i.unit_cost) FROM balances b JOIN items i USING (sku) "
                "JOIN locations loc USING (location_id) GROUP BY 1"))).all())
            stocked = await conn.scalar(text("SELECT count(DISTINCT location_id) FROM balances WHERE quantity > 0"))
    finally:
        await engine.dispose()
    assert inventory == units_at_cost and len(inventory) >= 2 and all(v > 0 for v in inventory.values())
    assert stocked == len(LOCATIONS)


@pytest.mark.unit
def test_the_catalog_is_a_realistic_network() -> None:
    assert len(ITEMS) >= 50
    assert sum("CASE" in i.units for i in ITEMS) >= 3 and sum("PACK" in i.units for i in ITEMS) >= 3
    assert len({i.barcode for i in ITEMS}) == len(ITEMS) and len({i.sku for i in ITEMS}) == len(ITEMS)
    assert all(0 < i.unit_cost < i.price for i in ITEMS)
    kinds = [loc.kind for loc in LOCATIONS]
    assert kinds.count(LocationKind.DISTRIBUTION_CENTER) >= 2 and kinds.count(LocationKind.STORE) >= 5
    assert len({loc.legal_entity for loc in LOCATIONS}) >= 2

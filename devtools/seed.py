"""`retailflow seed`: the demo master data and opening stock, loaded through the ERP port and the ledger.

Opening stock is received as RECEIPT movements keyed per location, so the journal opens balanced (Dr inventory,
Cr goods received) and seeding twice changes nothing: master data is insert-if-absent, movements are
idempotent by key.
"""
from pydantic import BaseModel

from adapters.stub_erp import PostgresErp
from devtools.catalog import CATEGORIES, ITEMS, LOCATIONS, opening_movements
from persistence.engine import create_engine
from persistence.migrations import upgrade


class SeedReport(BaseModel):
    master_rows_added: int
    movements_applied: int
    movements_already_applied: int
    items: int
    locations: int


async def seed(database_url: str, *, migrate: bool = True) -> SeedReport:
    """Seed the database at `database_url` (migrating it to head first, unless told not to)."""
    if migrate:
        await upgrade(database_url)
    engine = create_engine(database_url, pool_size=2, max_overflow=0)
    try:
        erp = PostgresErp(engine)
        added = await erp.add_master_data(ITEMS, LOCATIONS, CATEGORIES)
        applied = replayed = 0
        for movement in opening_movements():
            result = await erp.post_movement(movement)
            applied += result.applied
            replayed += not result.applied
        return SeedReport(master_rows_added=added, movements_applied=applied, movements_already_applied=replayed,
                          items=len(ITEMS), locations=len(LOCATIONS))
    finally:
        await engine.dispose()

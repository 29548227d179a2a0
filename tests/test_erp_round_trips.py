"""The stub ERP's round trips: master data read once, single statements in autocommit (persistence.engine)."""
import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from sqlalchemy import event

from adapters.stub_erp import PostgresErp
from domain.errors import DomainError, ErrorType
from domain.inventory import MovementKind
from persistence.engine import create_engine
from tests.ledger_helpers import World, line, movement


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def erp(database_url: str) -> AsyncIterator[PostgresErp]:
    engine = create_engine(database_url)
    yield PostgresErp(engine)
    await engine.dispose()


@contextlib.contextmanager
def statements(erp: PostgresErp) -> Iterator[list[tuple[str, str | None]]]:
    """(SQL text, isolation level) of every statement the adapter's engine runs meanwhile; BEGIN included."""
    seen: list[tuple[str, str | None]] = []

    def record(conn, _cursor, statement, _parameters, _context, _many) -> None:  # noqa: ANN001
        seen.append((statement, conn.get_execution_options().get("isolation_level")))

    def begin(conn) -> None:  # noqa: ANN001
        if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            seen.append(("BEGIN", None))

    event.listen(erp.engine.sync_engine, "before_cursor_execute", record)
    event.listen(erp.engine.sync_engine, "begin", begin)
    try:
        yield seen
    finally:
        event.remove(erp.engine.sync_engine, "before_cursor_execute", record)
        event.remove(erp.engine.sync_engine, "begin", begin)


def reads_of(seen: list[tuple[str, str | None]], table: str) -> int:
    return sum(1 for text, _ in seen if text.startswith("SELECT") and f"FROM {table}" in text)


async def test_a_posting_reads_the_item_master_once_per_adapter(erp: PostgresErp) -> None:
    """Items and locations are never rewritten, so the second posting for the same SKUs and locations reads
    neither again; its costs and legal entities are the same as the first's."""
    world = await World().create(erp)
    sku = world.skus[0]
    with statements(erp) as first:
        await erp.post_movement(movement(world.key("a"), MovementKind.RECEIPT, line(sku, world.dc, 5)))
    with statements(erp) as second:
        result = await erp.post_movement(movement(world.key("b"), MovementKind.RECEIPT, line(sku, world.dc, 5)))
    assert reads_of(first, "items") == 1 and reads_of(first, "locations") == 1
    assert reads_of(second, "items") == 0 and reads_of(second, "locations") == 0
    assert result.applied and len(second) < len(first)
    assert (await erp.items([sku]))[sku].unit_cost == world.cost[sku]


async def test_an_unknown_sku_is_asked_again_and_found_once_added(erp: PostgresErp) -> None:
    world = World()
    sku = world.skus[0]
    with pytest.raises(DomainError) as unknown:
        await erp.post_movement(movement(world.key("early"), MovementKind.RECEIPT, line(sku, world.dc, 1)))
    assert unknown.value.type is ErrorType.UNKNOWN_SKU
    await world.create(erp)  # the master gains the item and the locations after the refusal
    result = await erp.post_movement(movement(world.key("late"), MovementKind.RECEIPT, line(sku, world.dc, 1)))
    assert result.applied
    assert list(await erp.items([sku, "NOPE"])) == [sku]
    assert set(await erp.locations(None)) >= set(world.location_ids)


async def test_reads_are_single_statements_in_autocommit(erp: PostgresErp) -> None:
    """No BEGIN and no ROLLBACK around a read: one statement, one round trip."""
    world = await World().create(erp)
    with statements(erp) as seen:
        await erp.availability(world.skus, world.location_ids)
        await erp.stock(world.skus, world.location_ids)
    assert [level for _, level in seen] == ["AUTOCOMMIT", "AUTOCOMMIT"]

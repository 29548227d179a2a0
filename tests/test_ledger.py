"""The stub ERP ledger against a real PostgreSQL: every movement kind, refusals, idempotency, the journal,
and the database guards that hold whatever the code does."""
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from adapters.erp import FinancialPosting
from adapters.stub_erp import PostgresErp
from domain.errors import DomainError, ErrorType
from domain.inventory import Bucket, MovementKind
from domain.journal import FinancialEvent
from persistence.engine import create_engine
from tests.ledger_helpers import World, buckets, line, movement, raw_movement
from tests.support import assert_checker_ok

K = MovementKind


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def erp(database_url: str) -> AsyncIterator[PostgresErp]:
    engine = create_engine(database_url)
    yield PostgresErp(engine)
    await engine.dispose()


@pytest_asyncio.fixture(loop_scope="session")
async def world(erp: PostgresErp) -> World:
    return await World().create(erp)


async def journal(erp: PostgresErp, source_key: str) -> dict[str, dict[str, Decimal]]:
    """entity -> account -> debit minus credit, for the entries a source key posted."""
    out: dict[str, dict[str, Decimal]] = {}
    async with erp.engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT e.legal_entity, l.account, sum(l.debit - l.credit) FROM journal_lines l "
            "JOIN journal_entries e ON e.key = l.entry_key WHERE e.source_key = :k GROUP BY 1, 2"), {"k": source_key})
        for entity, account, value in rows:
            out.setdefault(entity, {})[account] = value
    return out


async def test_receipt_through_to_ship_moves_buckets_and_posts_cogs(erp: PostgresErp, world: World) -> None:
    sku, dc = world.skus[0], world.dc
    await erp.post_movement(movement(world.key("rcv"), K.RECEIPT, line(sku, dc, 10)))
    await erp.post_movement(movement(world.key("res"), K.RESERVE, line(sku, dc, 4)))
    await erp.post_movement(movement(world.key("pick"), K.PICK, line(sku, dc, 3)))
    await erp.post_movement(movement(world.key("rel"), K.RELEASE, line(sku, dc, 1)))
    result = await erp.post_movement(movement(world.key("ship"), K.SHIP, line(sku, dc, 2)))
    assert await buckets(erp, sku, dc) == {**dict.fromkeys(Bucket, 0), Bucket.AVAILABLE: 7, Bucket.PICKED: 1}
    cost = world.cost[sku]
    assert await journal(erp, world.key("rcv")) == {
        world.entity_a: {"inventory": 10 * cost, "goods_received_not_invoiced": -10 * cost}}
    assert await journal(erp, world.key("res")) == {}  # value stays in inventory: nothing to post
    assert await journal(erp, world.key("ship")) == {world.entity_a: {"inventory": -2 * cost, "cogs": 2 * cost}}
    assert result.journal_keys == [f"{world.key('ship')}@{world.entity_a}"]
    await assert_checker_ok(erp_url(erp))


def erp_url(erp: PostgresErp) -> str:
    return erp.engine.url.render_as_string(hide_password=False)


async def test_transfer_between_entities_posts_intercompany_on_both_sides(erp: PostgresErp, world: World) -> None:
    sku = world.skus[1]
    cost = world.cost[sku]
    await erp.post_movement(movement(world.key("rcv"), K.RECEIPT, line(sku, world.dc, 5)))
    await erp.post_movement(movement(world.key("res"), K.RESERVE, line(sku, world.dc, 5)))
    await erp.post_movement(movement(world.key("pick"), K.PICK, line(sku, world.dc, 5)))
    await erp.post_movement(movement(world.key("ship"), K.TRANSFER_SHIP, line(sku, world.dc, 5, to_location_id=world.far)))
    assert (await buckets(erp, sku, world.far))[Bucket.IN_TRANSIT] == 5
    assert await journal(erp, world.key("ship")) == {
        world.entity_a: {"inventory": -5 * cost, "intercompany_receivable": 5 * cost},
        world.entity_b: {"inventory_in_transit": 5 * cost, "intercompany_payable": -5 * cost},
    }
    await erp.post_movement(movement(world.key("recv"), K.TRANSFER_RECEIPT, line(sku, world.far, 4)))
    await erp.post_movement(movement(world.key("short"), K.ADJUST, line(sku, world.far, -1, bucket=Bucket.IN_TRANSIT),
                                     reason_code="receipt_variance"))
    assert await buckets(erp, sku, world.far) == {**dict.fromkeys(Bucket, 0), Bucket.AVAILABLE: 4}
    assert await journal(erp, world.key("short")) == {world.entity_b: {"inventory_in_transit": -cost, "shrink": cost}}
    await assert_checker_ok(erp_url(erp))


async def test_transfer_within_an_entity_moves_value_to_in_transit(erp: PostgresErp, world: World) -> None:
    sku = world.skus[0]
    cost = world.cost[sku]
    for name, kind in (("rcv", K.RECEIPT), ("res", K.RESERVE), ("pick", K.PICK)):
        await erp.post_movement(movement(world.key(name), kind, line(sku, world.dc, 2)))
    await erp.post_movement(movement(world.key("ship"), K.TRANSFER_SHIP, line(sku, world.dc, 2, to_location_id=world.store)))
    assert await journal(erp, world.key("ship")) == {
        world.entity_a: {"inventory": -2 * cost, "inventory_in_transit": 2 * cost}}


async def test_return_receipt_disposition_write_off_and_vendor_return(erp: PostgresErp, world: World) -> None:
    sku, store = world.skus[0], world.store
    cost = world.cost[sku]
    await erp.post_movement(movement(world.key("ret"), K.RETURN_RECEIPT, line(sku, store, 4)))
    assert await journal(erp, world.key("ret")) == {
        world.entity_a: {"returns_pending_inspection": 4 * cost, "cogs": -4 * cost}}
    await erp.post_movement(movement(world.key("disp"), K.DISPOSITION,
                                     line(sku, store, 2, to_bucket=Bucket.AVAILABLE),
                                     line(sku, store, 1, to_bucket=Bucket.DAMAGED),
                                     line(sku, store, 1, to_bucket=Bucket.VENDOR_RETURN)))
    assert await buckets(erp, sku, store) == {**dict.fromkeys(Bucket, 0), Bucket.AVAILABLE: 2, Bucket.DAMAGED: 1,
                                              Bucket.VENDOR_RETURN: 1}
    await erp.post_movement(movement(world.key("wo"), K.WRITE_OFF, line(sku, store, 1)))
    await erp.post_movement(movement(world.key("rtv"), K.VENDOR_RETURN, line(sku, store, 1)))
    assert await journal(erp, world.key("wo")) == {world.entity_a: {"inventory": -cost, "shrink": cost}}
    assert await journal(erp, world.key("rtv")) == {world.entity_a: {"inventory": -cost, "vendor_receivable": cost}}
    await assert_checker_ok(erp_url(erp))


async def test_same_key_returns_first_result_and_changes_nothing(erp: PostgresErp, world: World) -> None:
    sku, dc = world.skus[0], world.dc
    first = await erp.post_movement(movement(world.key("rcv"), K.RECEIPT, line(sku, dc, 3)))
    again = await erp.post_movement(movement(world.key("rcv"), K.RECEIPT, line(sku, dc, 3), run_id="run-2"))
    assert first.applied and not again.applied
    assert again.journal_keys == first.journal_keys
    assert (await buckets(erp, sku, dc))[Bucket.AVAILABLE] == 3
    with pytest.raises(DomainError) as refused:
        await erp.post_movement(movement(world.key("rcv"), K.RECEIPT, line(sku, dc, 4)))
    assert refused.value.type is ErrorType.IDEMPOTENCY_CONFLICT
    assert (await buckets(erp, sku, dc))[Bucket.AVAILABLE] == 3


@pytest.mark.parametrize(("kind", "make", "error"), [
    (K.RESERVE, lambda w: line(w.skus[0], w.dc, 1), ErrorType.INSUFFICIENT_STOCK),
    (K.PICK, lambda w: line(w.skus[0], w.dc, 1), ErrorType.INSUFFICIENT_STOCK),
    (K.RESERVE, lambda w: line("NO-SUCH-SKU", w.dc, 1), ErrorType.UNKNOWN_SKU),
    (K.RECEIPT, lambda w: line(w.skus[0], "NO-SUCH-LOC", 1), ErrorType.UNKNOWN_LOCATION),
    (K.TRANSFER_SHIP, lambda w: line(w.skus[0], w.dc, 1, to_location_id="NOWHERE"), ErrorType.UNKNOWN_LOCATION),
    (K.RECEIPT, lambda w: line(w.skus[0], w.dc, 0), ErrorType.INVALID_TRANSITION),
    (K.RECEIPT, lambda w: line(w.skus[0], w.dc, -2), ErrorType.INVALID_TRANSITION),
    (K.RESERVE, lambda w: line(w.skus[0], w.dc, 1, bucket=Bucket.AVAILABLE), ErrorType.INVALID_TRANSITION),
    (K.SHIP, lambda w: line(w.skus[0], w.dc, 1, to_location_id=w.store), ErrorType.INVALID_TRANSITION),
    (K.TRANSFER_SHIP, lambda w: line(w.skus[0], w.dc, 1), ErrorType.INVALID_TRANSITION),
    (K.DISPOSITION, lambda w: line(w.skus[0], w.dc, 1, to_bucket=Bucket.IN_TRANSIT), ErrorType.INVALID_TRANSITION),
    (K.ADJUST, lambda w: line(w.skus[0], w.dc, 1, bucket=Bucket.AVAILABLE), ErrorType.INVALID_TRANSITION),  # no code
])
async def test_refusals_change_nothing(erp: PostgresErp, world: World, kind: MovementKind, make, error: ErrorType) -> None:  # noqa: ANN001
    with pytest.raises(DomainError) as refused:
        await erp.post_movement(raw_movement(world.key("bad"), kind, make(world)))
    assert refused.value.type is error
    assert await buckets(erp, world.skus[0], world.dc) == dict.fromkeys(Bucket, 0)
    async with erp.engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM movement_batches WHERE key = :k"), {"k": world.key("bad")}) == 0


async def test_a_multi_line_movement_is_all_or_nothing(erp: PostgresErp, world: World) -> None:
    a, b = world.skus
    await erp.post_movement(movement(world.key("rcv"), K.RECEIPT, line(a, world.dc, 5), line(b, world.dc, 1)))
    with pytest.raises(DomainError) as refused:
        await erp.post_movement(movement(world.key("res"), K.RESERVE, line(a, world.dc, 5), line(b, world.dc, 2)))
    assert refused.value.type is ErrorType.INSUFFICIENT_STOCK
    assert refused.value.details["sku"] == b
    assert (await buckets(erp, a, world.dc))[Bucket.AVAILABLE] == 5
    assert (await buckets(erp, a, world.dc))[Bucket.RESERVED] == 0


async def test_financial_postings_are_idempotent_by_key(erp: PostgresErp, world: World) -> None:
    def posting(amount: str) -> FinancialPosting:
        return FinancialPosting(key=world.key("sale"), event=FinancialEvent.SALE, location_id=world.far,
                                amount=Decimal(amount), currency="USD", memo="sale", workflow_id="wf", run_id="r")

    assert (await erp.post_financial(posting("30.00"))).applied
    assert not (await erp.post_financial(posting("30.00"))).applied
    with pytest.raises(DomainError) as refused:
        await erp.post_financial(posting("31.00"))
    assert refused.value.type is ErrorType.IDEMPOTENCY_CONFLICT
    assert await journal(erp, world.key("sale")) == {world.entity_b: {"receivable": Decimal("30.00"),
                                                                      "revenue": Decimal("-30.00")}}
    with pytest.raises(DomainError) as unknown:
        await erp.post_financial(posting("1").model_copy(update={"key": world.key("x"), "location_id": "NOPE"}))
    assert unknown.value.type is ErrorType.UNKNOWN_LOCATION


async def test_availability_lists_every_location_with_zeros(erp: PostgresErp, world: World) -> None:
    await erp.post_movement(movement(world.key("rcv"), K.RECEIPT, line(world.skus[0], world.store, 7)))
    rows = await erp.availability(world.skus, world.location_ids)
    got = {(r.sku, r.location_id): r.on_hand_available for r in rows}
    assert got == {(s, loc): (7 if (s, loc) == (world.skus[0], world.store) else 0)
                   for s in world.skus for loc in world.location_ids}


# --- the database's own guards ------------------------------------------------------------------------------
async def test_database_refuses_a_negative_bucket(erp: PostgresErp, world: World) -> None:
    with pytest.raises(IntegrityError, match="balances_quantity_not_negative"):
        async with erp.engine.begin() as conn:
            await conn.execute(text("INSERT INTO balances (sku, location_id, bucket, quantity) VALUES "
                                    "(:s, :l, 'available', -1)"), {"s": world.skus[0], "l": world.dc})


async def test_database_refuses_an_unbalanced_entry_at_commit(erp: PostgresErp, world: World) -> None:
    with pytest.raises(IntegrityError, match="unbalanced"):
        async with erp.engine.begin() as conn:
            await conn.execute(text("INSERT INTO journal_entries (key, source_key, source_kind, legal_entity, currency,"
                                    " memo) VALUES (:k, :k, 'manual', 'X', 'USD', 'bad')"), {"k": world.key("je")})
            await conn.execute(text("INSERT INTO journal_lines (entry_key, line, account, debit) "
                                    "VALUES (:k, 0, 'inventory', 5)"), {"k": world.key("je")})
            await conn.execute(text("INSERT INTO journal_lines (entry_key, line, account, credit) "
                                    "VALUES (:k, 1, 'shrink', 4)"), {"k": world.key("je")})
    # balanced lines inserted one by one are fine: the check is deferred to commit
    async with erp.engine.begin() as conn:
        await conn.execute(text("INSERT INTO journal_entries (key, source_key, source_kind, legal_entity, currency,"
                                " memo) VALUES (:k, :k, 'manual', 'X', 'USD', 'ok')"), {"k": world.key("je2")})
        await conn.execute(text("INSERT INTO journal_lines (entry_key, line, account, debit) "
                                "VALUES (:k, 0, 'cash_clearing', 5)"), {"k": world.key("je2")})
        await conn.execute(text("INSERT INTO journal_lines (entry_key, line, account, credit) "
                                "VALUES (:k, 1, 'receivable', 5)"), {"k": world.key("je2")})


@pytest.mark.parametrize("statement", [
    "UPDATE movements SET delta = delta + 1 WHERE key = :k",
    "DELETE FROM movements WHERE key = :k",
    "UPDATE journal_lines SET debit = debit WHERE entry_key LIKE :k || '%'",
    "DELETE FROM movement_batches WHERE key = :k",
])
async def test_ledger_and_journal_are_append_only(erp: PostgresErp, world: World, statement: str) -> None:
    await erp.post_movement(movement(world.key("rcv"), K.RECEIPT, line(world.skus[0], world.dc, 1)))
    with pytest.raises(DBAPIError, match="append-only"):
        async with erp.engine.begin() as conn:
            await conn.execute(text(statement), {"k": world.key("rcv")})

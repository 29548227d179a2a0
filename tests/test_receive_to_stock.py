"""ReceiveToStock end to end on the time-skipping server with a real worker over the PostgreSQL stubs: receipts in
parts, over-receipt, a line the PO does not have, the ERP closing the PO, the overdue clock. Every test asserts
the buckets, the journal (inventory at standard cost, GRNI at PO cost, the price variance between) and the
invariant checker."""
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from adapters.stub_erp import PostgresErp
from client.names import SLA_BREACHED
from domain.events import EventType
from domain.inventory import Bucket
from domain.receiving import PoOutcome, PoStage, PoState
from tests.inventory_support import case_kinds, journal, run, stock
from tests.ledger_helpers import World
from tests.support import assert_checker_ok, event
from tests.support import unique as key

pytestmark = pytest.mark.asyncio(loop_scope="session")

A = Bucket.AVAILABLE


@pytest_asyncio.fixture(loop_scope="session")
async def world(engine: AsyncEngine) -> World:
    """Fresh SKUs at standard cost 2.50 and 3.50 (CASE = 12), nothing in stock."""
    return await World().create(PostgresErp(engine))


def created(po: str, location: str, *lines: tuple[str, str, int, str, str], expected_at: datetime | None = None):
    return event(EventType.PURCHASE_ORDER_CREATED, {
        "po_id": po, "supplier_id": "SUP-1", "location_id": location, "currency": "USD",
        "expected_at": (expected_at or datetime.now(UTC) + timedelta(days=3)).isoformat(),
        "lines": [{"line_id": lid, "sku": sku, "quantity": q, "uom": uom, "unit_cost": cost}
                  for lid, sku, q, uom, cost in lines]}, source="erp")


def received(po: str, receipt: str, location: str, *lines: tuple[str, str, int]):
    return event(EventType.PURCHASE_ORDER_RECEIVED, {
        "po_id": po, "receipt_id": receipt, "location_id": location,
        "lines": [{"line_id": lid, "sku": sku, "quantity": q} for lid, sku, q in lines]})


def closed(po: str, reason: str):
    return event(EventType.PURCHASE_ORDER_CLOSED, {"po_id": po, "reason": reason}, source="erp")


async def test_received_in_two_parts_at_po_cost_with_price_variance_against_standard(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    r, po = run(time_skipping_env, engine, database_url, PoState, "po"), key("PO")
    a, b = world.skus  # standard 2.50 and 3.50
    async with r.worker:
        # line 1: 2 CASE (24 EA) at 33.00 a case = 2.75 / EA (0.25 over standard); line 2: 10 EA at 3.20 (0.30 under)
        await r.send(created(po, world.dc, ("1", a, 2, "CASE", "33.00"), ("2", b, 10, "EA", "3.20")))
        await r.send(received(po, "GR-1", world.dc, ("1", a, 12), ("2", b, 4)))
        s = await r.until(po, lambda s: s.stage is PoStage.RECEIVING, "first receipt")
        assert [(ln.line_id, ln.ordered, ln.received, ln.outstanding) for ln in s.lines] == [
            ("1", 24, 12, 12), ("2", 10, 4, 6)]
        assert s.receipts[0].price_variance == Decimal("3.00") - Decimal("1.20")
        assert await stock(engine, a, world.dc) == {A: 12}
        await r.send(received(po, "GR-2", world.dc, ("1", a, 12), ("2", b, 6)))
        out, s = await r.finish(po, PoOutcome)
    assert (out.stage, out.ordered, out.received, out.cancelled, out.over) == (PoStage.RECEIVED, 34, 34, 0, 0)
    assert out.price_variance == Decimal("24") * Decimal("0.25") - Decimal("10") * Decimal("0.30")  # 6.00 - 3.00
    assert s.exceptions == [] and s.legal_entity == world.entity_a
    assert await stock(engine, a, world.dc) == {A: 24}
    assert await stock(engine, b, world.dc) == {A: 10}
    standard = 24 * Decimal("2.50") + 10 * Decimal("3.50")  # 95.00
    at_po_cost = 24 * Decimal("2.75") + 10 * Decimal("3.20")  # 98.00
    assert await journal(engine, po) == {world.entity_a: {
        "inventory": standard, "goods_received_not_invoiced": -at_po_cost, "purchase_price_variance": Decimal("3.00")}}
    await assert_checker_ok(database_url)


async def test_over_receipt_and_an_unknown_line_are_received_and_open_cases_then_the_erp_closes_the_rest(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    r, po = run(time_skipping_env, engine, database_url, PoState, "po"), key("PO")
    a, b = world.skus
    async with r.worker:
        await r.send(created(po, world.store, ("1", a, 20, "EA", "2.50"), ("2", b, 10, "EA", "3.50")))
        # 22 of 20 is 10 % over (tolerance 5 %); line 9 is not on the PO; NOPE-1 is not in the item master
        await r.send(received(po, "GR-1", world.store, ("1", a, 22), ("9", b, 3), ("7", "NOPE-1", 5)))
        s = await r.until(po, lambda s: len(s.exceptions) == 2, "cases opened")
        assert case_kinds(s) == ["over_receipt", "unknown_po_line"]
        assert s.receipts[0].unknown_lines == {"9": 3}
        assert [x.sku for x in s.receipts[0].refused] == ["NOPE-1"]
        assert s.stage is PoStage.RECEIVING  # line 2 is still outstanding
        await r.send(closed(po, "supplier cannot deliver the rest"))
        out, s = await r.finish(po, PoOutcome)
    assert (out.stage, out.received, out.cancelled) == (PoStage.CLOSED, 25, 10)
    assert s.close_reason == "supplier cannot deliver the rest"
    assert next(ln for ln in s.lines if ln.line_id == "2").cancelled == 10
    assert await stock(engine, a, world.store) == {A: 22}
    assert await stock(engine, b, world.store) == {A: 3}  # the unknown line, received all the same
    value = 22 * Decimal("2.50") + 3 * Decimal("3.50")  # at standard cost = PO cost: no variance
    assert await journal(engine, po) == {world.entity_a: {"inventory": value, "goods_received_not_invoiced": -value}}
    await assert_checker_ok(database_url)


async def test_a_receipt_id_delivered_twice_is_received_once(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    r, po = run(time_skipping_env, engine, database_url, PoState, "po"), key("PO")
    a = world.skus[0]
    async with r.worker:
        await r.send(received(po, "GR-1", world.far, ("1", a, 4)))  # before the PO: held
        await r.send(created(po, world.far, ("1", a, 8, "EA", "2.40")))
        await r.send(received(po, "GR-1", world.far, ("1", a, 4)))  # the same receipt, another event
        s = await r.until(po, lambda s: s.stage is PoStage.RECEIVING and s.notes, "second copy seen")
        assert [ln.received for ln in s.lines] == [4]
        await r.send(received(po, "GR-2", world.far, ("1", a, 4)))
        out, s = await r.finish(po, PoOutcome)
    assert (out.stage, out.received) == (PoStage.RECEIVED, 8)
    assert await stock(engine, a, world.far) == {A: 8}
    assert await journal(engine, po) == {world.entity_b: {
        "inventory": Decimal("20.00"), "goods_received_not_invoiced": Decimal("-19.20"),
        "purchase_price_variance": Decimal("-0.80")}}
    await assert_checker_ok(database_url)


async def test_overdue_after_expected_at_plus_grace_then_resolved_by_the_last_receipt(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    r, po = run(time_skipping_env, engine, database_url, PoState, "po"), key("PO")
    a = world.skus[0]
    expected = datetime.now(UTC) + timedelta(hours=2)
    async with r.worker:
        await r.send(created(po, world.dc, ("1", a, 6, "EA", "2.50"), expected_at=expected))
        s = await r.until(po, lambda s: s.stage is PoStage.OPEN, "open")
        assert s.overdue_at == expected + timedelta(hours=24)  # the default grace
        await r.send(received(po, "GR-1", world.dc, ("1", a, 2)))
        await r.until(po, lambda s: s.stage is PoStage.RECEIVING, "part received")
        await time_skipping_env.sleep(timedelta(hours=27))
        s = await r.until(po, lambda s: case_kinds(s, "open") == ["po_receipt_overdue"], "overdue case")
        described = await r.handle(po).describe()
        assert described.typed_search_attributes.get(SLA_BREACHED) is True
        await r.send(received(po, "GR-2", world.dc, ("1", a, 4)))
        out, s = await r.finish(po, PoOutcome)
    assert out.stage is PoStage.RECEIVED
    assert case_kinds(s, "resolved") == ["po_receipt_overdue"]
    assert await stock(engine, a, world.dc) == {A: 6}
    await assert_checker_ok(database_url)

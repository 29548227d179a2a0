"""VendorReturn end to end on the time-skipping server with a real worker over the PostgreSQL stubs: units out of
`vendor_return` against a vendor credit receivable, settled by a matching credit, a differing credit (its
difference to its own account), a shipment naming more than vendor_return holds, an overdue credit. Every test
asserts the buckets, the journal and the invariant checker."""
from datetime import timedelta
from decimal import Decimal

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from adapters.stub_erp import PostgresErp
from domain.events import EventType
from domain.inventory import Bucket, MovementKind
from domain.vendor_returns import RtvOutcome, RtvStage, RtvState
from tests.inventory_support import case_kinds, journal, run, stock
from tests.ledger_helpers import World, line, movement
from tests.support import assert_checker_ok, event
from tests.support import unique as key

pytestmark = pytest.mark.asyncio(loop_scope="session")

V, A = Bucket.VENDOR_RETURN, Bucket.AVAILABLE


@pytest_asyncio.fixture(loop_scope="session")
async def world(engine: AsyncEngine) -> World:
    """Fresh SKUs (standard 2.50 and 3.50): 5 and 2 units in `vendor_return` at the DC (customer returns
    dispositioned for the vendor), 20 of the first available."""
    w = await World().create(PostgresErp(engine))
    erp = PostgresErp(engine)
    a, b = w.skus
    await erp.post_movement(movement(w.key("stock"), MovementKind.RECEIPT, line(a, w.dc, 20)))
    await erp.post_movement(movement(w.key("returned"), MovementKind.RETURN_RECEIPT, line(a, w.dc, 5),
                                     line(b, w.dc, 2)))
    await erp.post_movement(movement(w.key("inspected"), MovementKind.DISPOSITION,
                                     line(a, w.dc, 5, to_bucket=V), line(b, w.dc, 2, to_bucket=V)))
    return w


def shipped(rtv: str, location: str, *lines: tuple[str, int]):
    return event(EventType.VENDOR_RETURN_SHIPPED, {"rtv_id": rtv, "location_id": location, "supplier_id": "SUP-7",
                                                   "lines": [{"sku": s, "quantity": q} for s, q in lines]})


def credited(rtv: str, amount: str, currency: str = "USD"):
    return event(EventType.VENDOR_CREDIT_RECEIVED, {"rtv_id": rtv, "amount": amount, "currency": currency},
                 source="erp")


async def test_a_matching_credit_settles_the_receivable(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    r, rtv = run(time_skipping_env, engine, database_url, RtvState, "rtv"), key("RTV")
    a, b = world.skus
    async with r.worker:
        await r.send(shipped(rtv, world.dc, (a, 5), (b, 2)))
        s = await r.until(rtv, lambda s: s.stage is RtvStage.AWAITING_CREDIT, "shipped")
        assert s.receivable == Decimal("19.50")  # 5 x 2.50 + 2 x 3.50
        assert await stock(engine, a, world.dc) == {A: 20}  # vendor_return emptied, sellable stock untouched
        assert await stock(engine, b, world.dc) == {}
        assert await journal(engine, rtv) == {world.entity_a: {"vendor_receivable": Decimal("19.50"),
                                                               "inventory": Decimal("-19.50")}}
        await r.send(credited(rtv, "19.50"))
        out, s = await r.finish(rtv, RtvOutcome)
    assert (out.stage, out.shipped, out.short, out.credited, out.difference) == (
        RtvStage.CREDITED, 7, 0, Decimal("19.50"), Decimal("0"))
    assert s.exceptions == []
    assert await journal(engine, rtv) == {world.entity_a: {"inventory": Decimal("-19.50"),
                                                           "accounts_payable": Decimal("19.50")}}
    await assert_checker_ok(database_url)


async def test_a_differing_credit_clears_the_receivable_with_its_difference_and_opens_a_case(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    r, rtv = run(time_skipping_env, engine, database_url, RtvState, "rtv"), key("RTV")
    a = world.skus[0]
    async with r.worker:
        await r.send(credited(rtv, "8.00"))  # the credit note before the shipment notice: held
        await r.send(shipped(rtv, world.dc, (a, 7)))  # 7 named, 5 in vendor_return
        out, s = await r.finish(rtv, RtvOutcome)
    assert (out.stage, out.shipped, out.short, out.receivable, out.difference) == (
        RtvStage.CREDITED, 5, 2, Decimal("12.50"), Decimal("-4.50"))
    assert case_kinds(s) == ["vendor_credit_mismatch", "vendor_return_short"]
    assert await stock(engine, a, world.dc) == {A: 20}  # the 2 named beyond vendor_return were not taken from sale
    assert await journal(engine, rtv) == {world.entity_a: {
        "inventory": Decimal("-12.50"), "accounts_payable": Decimal("8.00"),
        "vendor_credit_variance": Decimal("4.50")}}
    await assert_checker_ok(database_url)


async def test_a_credit_above_the_receivable_and_in_time_after_an_overdue_case(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    r, rtv = run(time_skipping_env, engine, database_url, RtvState, "rtv"), key("RTV")
    b = world.skus[1]
    async with r.worker:
        await r.send(shipped(rtv, world.dc, (b, 2)))
        await r.until(rtv, lambda s: s.stage is RtvStage.AWAITING_CREDIT, "shipped")
        await time_skipping_env.sleep(timedelta(days=31))
        await r.until(rtv, lambda s: case_kinds(s, "open") == ["vendor_credit_overdue"], "overdue case")
        await r.send(credited(rtv, "10.00", currency="EUR"))  # another currency: noted, not posted
        s = await r.until(rtv, lambda s: len(s.credits) == 1, "first credit seen")
        assert s.stage is RtvStage.AWAITING_CREDIT and not s.credits[0].applied
        await r.send(credited(rtv, "7.25"))
        out, s = await r.finish(rtv, RtvOutcome)
    assert (out.stage, out.receivable, out.credited, out.difference) == (
        RtvStage.CREDITED, Decimal("7.00"), Decimal("7.25"), Decimal("0.25"))
    assert case_kinds(s, "resolved") == ["vendor_credit_overdue"]
    assert case_kinds(s, "open") == ["vendor_credit_mismatch"]
    assert await journal(engine, rtv) == {world.entity_a: {
        "inventory": Decimal("-7.00"), "accounts_payable": Decimal("7.25"),
        "vendor_credit_variance": Decimal("-0.25")}}
    await assert_checker_ok(database_url)

"""The ERP activities through temporalio's ActivityEnvironment, over the PostgreSQL stub."""
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import pytest_asyncio
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.erp import ErpActivities
from activities.faults import Faults
from adapters.erp import AvailabilityInput, FinancialPosting, LookupItemsInput, LookupLocationsInput
from adapters.stub_erp import PostgresErp
from config.settings import FaultSpec
from devtools.embedded_postgres import free_port
from domain.errors import ErrorType
from domain.inventory import Bucket, MovementKind
from domain.items import Item
from domain.journal import FinancialEvent
from persistence.engine import create_engine
from tests.ledger_helpers import World, buckets, line, movement
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


async def refused(call, *args) -> ApplicationError:  # noqa: ANN001
    with pytest.raises(ApplicationError) as error:
        await ActivityEnvironment().run(call, *args)
    return error.value


async def test_lookups_report_the_unknown(erp: PostgresErp, world: World) -> None:
    acts = ErpActivities(erp)
    env = ActivityEnvironment()
    items = await env.run(acts.lookup_items, LookupItemsInput(skus=[world.skus[0], "NOPE", world.skus[0]]))
    assert list(items.items) == [world.skus[0]] and items.unknown == ["NOPE"]
    assert items.items[world.skus[0]].to_base_units(2, "CASE") == 24
    locations = await env.run(acts.lookup_locations, LookupLocationsInput(location_ids=[world.far, "NOWHERE"]))
    assert locations.locations[world.far].legal_entity == world.entity_b and locations.unknown == ["NOWHERE"]
    everything = await env.run(acts.lookup_locations, LookupLocationsInput())
    assert set(world.location_ids) <= set(everything.locations)


async def test_availability_holds_back_safety_stock(erp: PostgresErp, world: World) -> None:
    sku = world.skus[0]
    await erp.post_movement(movement(world.key("rcv"), K.RECEIPT, line(sku, world.store, 5), line(sku, world.dc, 50)))
    acts = ErpActivities(erp, safety_stock={world.store: 2, world.dc: 100})
    result = await ActivityEnvironment().run(acts.get_availability, AvailabilityInput(skus=[sku],
                                                                                      location_ids=world.location_ids))
    got = {r.location_id: (r.available, r.on_hand_available) for r in result.rows}
    assert got == {world.store: (3, 5), world.dc: (0, 50), world.far: (0, 0)}


async def test_post_movement_retried_with_the_same_key_applies_once(erp: PostgresErp, world: World,
                                                                   database_url: str) -> None:
    acts = ErpActivities(erp)
    env = ActivityEnvironment()
    sku = world.skus[0]
    receipt = movement(world.key("rcv"), K.RECEIPT, line(sku, world.store, 4))
    first = await env.run(acts.post_movement, receipt)
    retried = await env.run(acts.post_movement, receipt.model_copy(update={"run_id": "run-2"}))
    assert first.applied and not retried.applied and retried.journal_keys == first.journal_keys
    assert (await buckets(erp, sku, world.store))[Bucket.AVAILABLE] == 4
    await assert_checker_ok(database_url)


@pytest.mark.parametrize(("make", "error"), [
    (lambda w: movement(w.key("r"), K.RESERVE, line(w.skus[0], w.store, 1)), ErrorType.INSUFFICIENT_STOCK),
    (lambda w: movement(w.key("r"), K.RESERVE, line("NOPE", w.store, 1)), ErrorType.UNKNOWN_SKU),
    (lambda w: movement(w.key("r"), K.RESERVE, line(w.skus[0], "NOWHERE", 1)), ErrorType.UNKNOWN_LOCATION),
])
async def test_post_movement_refusals_are_typed_and_not_retryable(erp: PostgresErp, world: World, make,  # noqa: ANN001
                                                                  error: ErrorType) -> None:
    err = await refused(ErpActivities(erp).post_movement, make(world))
    assert err.type == error and err.non_retryable


async def test_insufficient_stock_says_where(erp: PostgresErp, world: World) -> None:
    err = await refused(ErpActivities(erp).post_movement, movement(world.key("r"), K.RESERVE,
                                                                   line(world.skus[1], world.dc, 3)))
    assert err.details[0] == {"sku": world.skus[1], "location_id": world.dc, "bucket": "available"}


async def test_same_key_with_another_movement_is_a_conflict(erp: PostgresErp, world: World) -> None:
    acts = ErpActivities(erp)
    await ActivityEnvironment().run(acts.post_movement, movement(world.key("k"), K.RECEIPT, line(world.skus[0], world.dc, 1)))
    err = await refused(acts.post_movement, movement(world.key("k"), K.RECEIPT, line(world.skus[0], world.dc, 2)))
    assert err.type == ErrorType.IDEMPOTENCY_CONFLICT and err.non_retryable


async def test_post_financial_retried_applies_once(erp: PostgresErp, world: World) -> None:
    acts = ErpActivities(erp)
    posting = FinancialPosting(key=world.key("settle"), event=FinancialEvent.SETTLEMENT, legal_entity=world.entity_a,
                               amount=Decimal("42.10"), currency="USD", memo="settled", workflow_id="wf", run_id="r1")
    env = ActivityEnvironment()
    assert (await env.run(acts.post_financial, posting)).applied
    assert not (await env.run(acts.post_financial, posting.model_copy(update={"run_id": "r2"}))).applied
    err = await refused(acts.post_financial, posting.model_copy(update={"key": world.key("x"), "legal_entity": None}))
    assert err.type == ErrorType.INVALID_TRANSITION


async def test_an_injected_fault_is_retryable_and_writes_nothing(erp: PostgresErp, world: World) -> None:
    faults = Faults({"erp.post_movement": FaultSpec(failure_rate=1.0)}, seed=1)
    request = movement(world.key("rcv"), K.RECEIPT, line(world.skus[0], world.dc, 9))
    err = await refused(ErpActivities(erp, faults).post_movement, request)
    assert err.type == ErrorType.INJECTED_FAULT and not err.non_retryable
    assert (await buckets(erp, world.skus[0], world.dc))[Bucket.AVAILABLE] == 0
    # the retry, once the outage is over, applies it
    assert (await ActivityEnvironment().run(ErpActivities(erp).post_movement, request)).applied


async def test_a_database_outage_is_retryable() -> None:
    engine = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/none", pool_size=1, max_overflow=0)
    try:
        with pytest.raises(Exception) as error:
            await ActivityEnvironment().run(ErpActivities(PostgresErp(engine)).lookup_items, LookupItemsInput(skus=["A"]))
        assert not isinstance(error.value, ApplicationError)  # Temporal retries anything not marked non-retryable
    finally:
        await engine.dispose()


async def test_item_master_is_cached_per_worker_but_unknown_skus_are_not() -> None:
    """The second order's lookup reads no item the first one read; an unknown SKU is asked again (it may have
    been added to the master since)."""
    class CountingErp:
        def __init__(self) -> None:
            self.asked: list[list[str]] = []

        async def items(self, skus: list[str]) -> dict[str, Item]:
            self.asked.append(list(skus))
            return {s: Item(sku=s, name=s, barcode=s, unit_cost=Decimal("1.00"), price=Decimal("2.00"))
                    for s in skus if s.startswith("K")}

    erp = CountingErp()
    acts = ErpActivities(erp, master_data_ttl=60)  # type: ignore[arg-type]
    first = await ActivityEnvironment().run(acts.lookup_items, LookupItemsInput(skus=["K-1", "K-2", "X-9"]))
    second = await ActivityEnvironment().run(acts.lookup_items, LookupItemsInput(skus=["K-2", "K-1", "X-9"]))
    assert set(first.items) == set(second.items) == {"K-1", "K-2"}
    assert first.unknown == second.unknown == ["X-9"]
    assert erp.asked == [["K-1", "K-2", "X-9"], ["X-9"]]

"""CountToAdjust end to end on the time-skipping server with a real worker over the PostgreSQL stubs: variances
measured against the ledger as of counted_at, adjusted at once within tolerance, approved or rejected by ops
beyond it (and overdue when nobody decides), and a count racing a reservation. Every test asserts the buckets,
the journal (shrink / gain at standard cost) and the invariant checker. And release 3's continue-as-new while a
count waits for ops."""
import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.enums.v1 import EventType as HistoryEvent
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from adapters.stub_erp import PostgresErp
from domain.counts import CountOutcome, CountStage, CountState, DecisionRequest, LineStatus
from domain.events import EventType
from domain.inventory import Bucket, MovementKind
from domain.sla import SlaKind
from starters.counts import CountRefused, decide
from tests.inventory_support import case_kinds, journal, movements, run, stock
from tests.ledger_helpers import World, line, movement
from tests.support import assert_checker_ok, event
from tests.support import unique as key
from workflows.count_to_adjust import CountToAdjust

pytestmark = pytest.mark.asyncio(loop_scope="session")

A, R = Bucket.AVAILABLE, Bucket.RESERVED


@pytest_asyncio.fixture(loop_scope="session")
async def world(engine: AsyncEngine) -> World:
    """Fresh SKUs (standard 2.50 and 3.50) with 30 and 10 units available at the store of entity A."""
    w = await World().create(PostgresErp(engine))
    await PostgresErp(engine).post_movement(movement(w.key("stock"), MovementKind.RECEIPT,
                                                     line(w.skus[0], w.store, 30), line(w.skus[1], w.store, 10)))
    return w


def submitted(count: str, location: str, *lines: tuple[str, int], counted_at: datetime | None = None):
    return event(EventType.COUNT_SUBMITTED, {
        "count_id": count, "location_id": location, "counted_at": (counted_at or datetime.now(UTC)).isoformat(),
        "lines": [{"sku": sku, "quantity": q} for sku, q in lines]})


async def test_within_tolerance_a_loss_and_a_gain_are_adjusted_at_once_with_reason_cycle_count(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    r, count = run(time_skipping_env, engine, database_url, CountState, "count"), key("CC")
    a, b = world.skus
    async with r.worker:
        await r.send(submitted(count, world.store, (a, 28), (b, 11)))  # -2 (5.00) and +1 (3.50): within 2 / 25.00
        out, s = await r.finish(count, CountOutcome)
    assert (out.stage, out.adjusted_units, out.shrink, out.gain) == (CountStage.ADJUSTED, -1, Decimal("5.00"),
                                                                     Decimal("3.50"))
    assert [(ln.sku, ln.on_hand_at_count, ln.variance, ln.status) for ln in s.lines] == [
        (a, 30, -2, LineStatus.ADJUSTED), (b, 10, 1, LineStatus.ADJUSTED)]
    assert s.exceptions == [] and s.decision is None
    assert await stock(engine, a, world.store) == {A: 28}
    assert await stock(engine, b, world.store) == {A: 11}
    assert sorted(await movements(engine, count)) == [("adjust", a, "available", -2, "cycle_count"),
                                                      ("adjust", b, "available", 1, "cycle_count")]
    assert await journal(engine, count) == {world.entity_a: {"inventory": Decimal("-1.50"), "shrink": Decimal("1.50")}}
    await assert_checker_ok(database_url)


async def test_movements_after_counted_at_are_not_a_variance(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    r, count = run(time_skipping_env, engine, database_url, CountState, "count"), key("CC")
    a = world.skus[0]
    before = (await stock(engine, a, world.store)).get(A, 0)
    counted_at = datetime.now(UTC)
    await asyncio.sleep(0.05)
    erp = PostgresErp(engine)
    await erp.post_movement(movement(world.key(f"late-{count}"), MovementKind.RECEIPT, line(a, world.store, 7)))
    async with r.worker:
        # the counter saw what the ledger held at counted_at; the 7 received since are no variance
        await r.send(submitted(count, world.store, (a, before), counted_at=counted_at))
        out, s = await r.finish(count, CountOutcome)
    assert out.stage is CountStage.ADJUSTED and out.adjusted_units == 0
    assert [(ln.on_hand_at_count, ln.variance, ln.status) for ln in s.lines] == [(before, 0, LineStatus.MATCHED)]
    assert await stock(engine, a, world.store) == {A: before + 7}
    assert await movements(engine, count) == [] and await journal(engine, count) == {}
    await assert_checker_ok(database_url)


async def test_beyond_tolerance_waits_for_ops_and_an_approval_adjusts_recording_the_decider(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    r, count = run(time_skipping_env, engine, database_url, CountState, "count"), key("CC")
    a, b = world.skus
    start_a = (await stock(engine, a, world.store))[A]
    start_b = (await stock(engine, b, world.store))[A]
    async with r.worker:
        # a: -6 units (beyond 2 units); b: -1 (within): b is adjusted at once, a waits
        await r.send(submitted(count, world.store, (a, start_a - 6), (b, start_b - 1)))
        s = await r.until(count, lambda s: s.stage is CountStage.AWAITING_APPROVAL, "awaiting approval")
        assert [(ln.sku, ln.status) for ln in s.lines] == [(a, LineStatus.AWAITING_APPROVAL), (b, LineStatus.ADJUSTED)]
        assert await stock(engine, a, world.store) == {A: start_a}
        assert await stock(engine, b, world.store) == {A: start_b - 1}
        with pytest.raises(WorkflowUpdateFailedError):  # the validator: a note is required
            await r.handle(count).execute_update("approve", DecisionRequest.model_construct(note=" ", decided_by="x"))
        answer = await r.handle(count).execute_update(
            "approve", DecisionRequest(note="shelf photo confirms", decided_by="ops-maria"), result_type=CountState)
        assert answer.stage is CountStage.ADJUSTED and answer.decision.decided_by == "ops-maria"
        out, s = await r.finish(count, CountOutcome)
        with pytest.raises(CountRefused, match="no decision is awaited"):  # decided already: the count has closed
            await decide(r.client, count, "reject", DecisionRequest(note="again", decided_by="x"))
    assert (out.stage, out.adjusted_units, out.decided_by) == (CountStage.ADJUSTED, -7, "ops-maria")
    assert s.decision.decision == "approved" and s.decision.note == "shelf photo confirms"
    assert await stock(engine, a, world.store) == {A: start_a - 6}
    assert await journal(engine, count) == {world.entity_a: {"inventory": Decimal("-18.50"),
                                                             "shrink": Decimal("18.50")}}
    assert case_kinds(s) == []  # decided in time: the approval clock never breached
    await assert_checker_ok(database_url)


async def test_a_rejected_count_changes_nothing_and_an_overdue_decision_opens_a_case_first(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    r, count = run(time_skipping_env, engine, database_url, CountState, "count"), key("CC")
    b = world.skus[1]
    start = (await stock(engine, b, world.store))[A]
    async with r.worker:
        await r.send(submitted(count, world.store, (b, start + 9)))  # +9: a gain beyond tolerance
        s = await r.until(count, lambda s: s.stage is CountStage.AWAITING_APPROVAL, "awaiting approval")
        assert s.approval_due_at is not None
        await time_skipping_env.sleep(timedelta(hours=25))
        await r.until(count, lambda s: case_kinds(s, "open") == ["count_approval_overdue"], "overdue case")
        await r.handle(count).execute_update("reject", DecisionRequest(note="recount ordered", decided_by="ops-li"))
        out, s = await r.finish(count, CountOutcome)
    assert (out.stage, out.adjusted_units) == (CountStage.REJECTED, 0)
    assert [ln.status for ln in s.lines] == [LineStatus.REJECTED]
    assert case_kinds(s, "resolved") == ["count_approval_overdue"]
    assert await stock(engine, b, world.store) == {A: start}
    assert await movements(engine, count) == [] and await journal(engine, count) == {}
    await assert_checker_ok(database_url)


async def test_a_count_below_what_a_reservation_holds_never_breaks_the_reservation(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    r = run(time_skipping_env, engine, database_url, CountState, "count",
            count_tolerance_units=50, count_tolerance_value=Decimal("500"))
    count = key("CC")
    erp = PostgresErp(engine)
    sku = f"{world.skus[0]}"
    shelf = world.far  # another location of its own: 10 units
    await erp.post_movement(movement(world.key(f"far-{count}"), MovementKind.RECEIPT, line(sku, shelf, 10)))
    counted_at = datetime.now(UTC)
    await asyncio.sleep(0.05)
    # after the count, before it is applied, an order reserves 8 of the 10
    await erp.post_movement(movement(world.key(f"reserve-{count}"), MovementKind.RESERVE, line(sku, shelf, 8),
                                     workflow_id="order:web:racer"))
    async with r.worker:
        await r.send(submitted(count, shelf, (sku, 3), counted_at=counted_at))  # -7 against the 10 at the count
        out, s = await r.finish(count, CountOutcome)
    assert (out.stage, out.adjusted_units, out.not_adjusted) == (CountStage.ADJUSTED, -2, 5)
    assert [(ln.variance, ln.adjusted, ln.not_adjusted) for ln in s.lines] == [(-7, -2, 5)]
    assert case_kinds(s, "open") == ["count_below_held"]
    assert await stock(engine, sku, shelf) == {R: 8}  # the reservation stands; available went to zero, not below
    assert await journal(engine, count) == {world.entity_b: {"inventory": Decimal("-5.00"), "shrink": Decimal("5.00")}}
    await assert_checker_ok(database_url)


async def test_an_unknown_location_is_refused_and_moves_nothing(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    r, count = run(time_skipping_env, engine, database_url, CountState, "count"), key("CC")
    async with r.worker:
        await r.send(submitted(count, "NO-SUCH-STORE", (world.skus[0], 1), ("NOPE-9", 2)))
        out, s = await r.finish(count, CountOutcome)
    assert out.stage is CountStage.REFUSED and "unknown location" in (out.reason or "")
    assert [x.sku for x in s.refused_lines] == ["NOPE-9"]
    assert await movements(engine, count) == []


async def test_ignored_counts_make_a_waiting_count_continue_as_new_and_its_clock_breaches_in_the_new_run(
        dev_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    """Release 3, on the dev server: counts submitted again for the same ID are ignored but grow the history; with
    a small `continue_as_new_after` the count waiting for ops continues as new, its notes, seen event IDs and
    approval clock with it: the clock (20 s here) breaches in a later run, and the approval (an update to the
    workflow ID) is applied once by the latest run and resolves the case."""
    r = run(dev_env, engine, database_url, CountState, "count", sla={SlaKind.COUNT_APPROVAL_OVERDUE: timedelta(seconds=20)})
    count, b = key("CC"), world.skus[1]
    start = (await stock(engine, b, world.store))[A]
    async with r.worker:
        first = await r.start_small(CountToAdjust.run, count, submitted(count, world.store, (b, start + 9)),
                                    continue_as_new_after=20)
        await r.until(count, lambda s: s.stage is CountStage.AWAITING_APPROVAL, "awaiting approval")
        again = [submitted(count, world.store, (b, start)) for _ in range(8)]
        for n, e in enumerate(again, start=1):
            await r.send(e)
            await r.until(count, lambda s, n=n: len(s.notes) == n, f"count {n} ignored")
        assert len(await r.runs(count, first)) > 1, "the count did not continue as new"
        await r.send(again[0])  # the same event again: a redelivery, not another ignored count
        await r.until(count, lambda s: case_kinds(s, "open") == ["count_approval_overdue"], "overdue case", limit=60)
        # as ops decide (CLI, read API): bounded attempts under one update ID, so an update lost while the count
        # continues as new is sent again rather than waited for
        answer = await decide(r.client, count, "approve", DecisionRequest(note="recounted twice", decided_by="ops-ana"))
        assert answer.stage is CountStage.ADJUSTED
        out, s = await r.finish(count, CountOutcome)
        histories = await r.runs(count, first)
    assert (out.stage, out.adjusted_units, out.decided_by) == (CountStage.ADJUSTED, 9, "ops-ana")
    assert len(s.notes) == 8 and s.duplicate_events == 1
    assert case_kinds(s, "resolved") == ["count_approval_overdue"]
    initiated = HistoryEvent.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED
    assert not any(e.event_type == initiated for e in histories[0].events), "the case opened in the first run"
    assert await stock(engine, b, world.store) == {A: start + 9}
    assert await movements(engine, count) == [("adjust", b, "available", 9, "cycle_count")]
    await assert_checker_ok(database_url)

"""ReserveToFulfill end to end: a real worker, the PostgreSQL stubs, and a Temporal server.

Time-skipping server for the process paths and the SLA clocks (start_workflow + execute_update("place")); the
dev server for what needs update-with-start (the ship path and the race for the last unit, through
client.dispatch). Every test works on its own SKUs and locations (tests.ledger_helpers.World), and asserts
the ledger buckets, the journal postings of its own workflow and that the invariant checker passes.
"""
import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.enums.v1 import EventType as HistoryEvent
from temporalio.api.testservice.v1 import SleepRequest
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from adapters.stub_erp import PostgresErp
from bench.cost import count
from client.dispatch import dispatch
from client.names import STAGE
from config.settings import FaultSpec, Settings
from devtools.histories import replayer
from domain import ids
from domain.events import Event, EventType
from domain.inventory import Bucket, MovementKind
from domain.order import (
    CancelRequest,
    CancelResult,
    Decision,
    OrderDecision,
    OrderOutcome,
    OrderStage,
    OrderState,
)
from domain.process import PartialPolicy, ProcessInput, ProcessPolicy
from domain.sla import SlaKind, SlaPolicy
from tests import support
from tests.ledger_helpers import World, buckets, line, movement
from tests.support import assert_checker_ok
from tests.support import test_settings as make_settings
from worker.factory import build_worker
from workflows.reserve_to_fulfill import ReserveToFulfill
from workflows.ship_to_settle import ShipToSettle

if TYPE_CHECKING:
    from domain.settlement import SettleState

T0 = datetime(2026, 11, 23, 12, tzinfo=UTC)


# --- fixtures and helpers -----------------------------------------------------------------------------------
@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def erp(engine: AsyncEngine) -> PostgresErp:
    return PostgresErp(engine)


async def world_with(erp: PostgresErp, stock: dict[tuple[int, str], int]) -> World:
    """A fresh World with opening stock: (sku index, "dc" | "store" | "far") -> EA."""
    w = await World().create(erp)
    where = {"dc": w.dc, "store": w.store, "far": w.far}
    for (n, loc), qty in stock.items():
        await erp.post_movement(movement(w.key(f"open:{n}:{loc}"), MovementKind.RECEIPT,
                                         line(w.skus[n], where[loc], qty)))
    return w


async def stock(erp: PostgresErp, w: World, n: int, location: str) -> dict[str, int]:
    """The non-zero buckets of SKU n at a location, as plain names."""
    return {str(b): q for b, q in (await buckets(erp, w.skus[n], location)).items() if q}


async def journal(engine: AsyncEngine, workflow_id: str) -> dict[str, Decimal]:
    """account -> net debit (debit - credit) over the journal entries this workflow's movements posted."""
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT l.account, sum(l.debit - l.credit) FROM journal_lines l JOIN journal_entries e "
            "ON e.key = l.entry_key WHERE e.workflow_id = :wf GROUP BY l.account"
        ), {"wf": workflow_id})).all()
    return {account: Decimal(total) for account, total in rows if total}


async def movements(engine: AsyncEngine, workflow_id: str) -> list[tuple[str, str]]:
    """(kind, key suffix) of every movement batch this workflow posted."""
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT DISTINCT kind, key FROM movements WHERE workflow_id = :wf ORDER BY key"), {"wf": workflow_id})).all()
    return sorted((kind, key.removeprefix(workflow_id + ":")) for kind, key in rows)


def ev(type: EventType, data: dict, *, event_id: str | None = None, source: str = "web") -> Event:
    return support.event(type, data, source=source, event_id=event_id, at=T0)


def placed(order_id: str, lines: list[tuple[str, int, str, str]], *, mode: str = "ship",
           location: str | None = None, channel: str = "web", event_id: str | None = None) -> Event:
    """lines: (sku, quantity, uom, unit price)."""
    amount = sum(Decimal(p) * q for _, q, _, p in lines)
    return ev(EventType.ORDER_PLACED, {
        "order_id": order_id, "channel": channel, "currency": "USD",
        "lines": [{"line_id": str(i + 1), "sku": s, "quantity": q, "uom": u, "unit_price": p}
                  for i, (s, q, u, p) in enumerate(lines)],
        "fulfillment": {"mode": mode, "location_id": location},
        "payment": {"payment_id": f"pay-{order_id}", "authorized_amount": str(amount)},
    }, event_id=event_id)


def picked(order_id: str, location: str, quantities: dict[str, int], *, event_id: str | None = None) -> Event:
    return ev(EventType.FULFILLMENT_PICKED, {
        "order_id": order_id, "channel": "web", "location_id": location,
        "lines": [{"line_id": k, "quantity": v} for k, v in quantities.items()]}, source="wms", event_id=event_id)


def dispatched(order_id: str, shipment_id: str, location: str, quantities: dict[str, int]) -> Event:
    return ev(EventType.SHIPMENT_DISPATCHED, {
        "shipment_id": shipment_id, "order_id": order_id, "channel": "web", "location_id": location,
        "carrier": "UPS", "tracking_number": f"1Z{shipment_id}",
        "lines": [{"line_id": k, "quantity": v} for k, v in quantities.items()]}, source="wms")


def collected(order_id: str, location: str) -> Event:
    return ev(EventType.ORDER_COLLECTED, {"order_id": order_id, "channel": "web", "location_id": location},
              source="pos")


def cancelled(order_id: str, reason: str = "customer changed their mind") -> Event:
    return ev(EventType.ORDER_CANCELLED, {"order_id": order_id, "channel": "web", "reason": reason})


def new_order() -> str:
    return f"o{uuid.uuid4().hex[:10]}"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ts(module_time_skipping_env: WorkflowEnvironment, database_url: str, engine: AsyncEngine) -> AsyncIterator[Settings]:
    """One worker on the time-skipping server for the whole module: when time skips, the timers of earlier
    tests' processes (ShipToSettle, exception cases) fire too, and need a worker on their task queue."""
    async with worker_for(module_time_skipping_env, database_url, engine) as settings:
        yield settings


@asynccontextmanager
async def worker_for(env: WorkflowEnvironment, database_url: str, engine: AsyncEngine,
                     **overrides: object) -> AsyncIterator[Settings]:
    settings = make_settings(database_url=database_url, **overrides)
    async with build_worker(env.client, engine, settings):
        yield settings


async def start(client: Client, settings: Settings, order_id: str, *, partial: PartialPolicy = PartialPolicy.ACCEPT,
                sla: dict | None = None, open_timeout: timedelta = timedelta(days=7),
                first: Event | None = None, continue_as_new_after: int = 2000) -> WorkflowHandle:
    policy = ProcessPolicy(partial=partial, open_timeout=open_timeout, continue_as_new_after=continue_as_new_after,
                           sla=SlaPolicy(deadlines={**SlaPolicy().deadlines, **(sla or {})}))
    return await client.start_workflow(
        ReserveToFulfill.run, ProcessInput(business_key=f"web/{order_id}", channel="web", policy=policy),
        id=ids.order_workflow_id("web", order_id), task_queue=settings.task_queue,
        start_signal="event" if first else None, start_signal_args=[first] if first else [],
    )


async def place(handle: WorkflowHandle, event: Event) -> OrderDecision:
    return await handle.execute_update(ReserveToFulfill.place, event, result_type=OrderDecision)


async def state(handle: WorkflowHandle) -> OrderState:
    return await handle.query(ReserveToFulfill.state)


async def until(handle: WorkflowHandle, predicate: Callable[[OrderState], bool], what: str,
                seconds: float = 30.0) -> OrderState:
    """The `state` once the process reaches `predicate` (signals are applied asynchronously)."""
    return await support.eventually(lambda: state(handle), predicate, what=what, within=seconds)


async def outcome(handle: WorkflowHandle) -> OrderOutcome:
    result = await handle.result()
    return result if isinstance(result, OrderOutcome) else OrderOutcome.model_validate(result)


async def skip(env: WorkflowEnvironment, duration: timedelta) -> None:
    """env.sleep with a longer RPC deadline: the server fires every timer in the skipped span (the earlier
    tests' exception cases escalate too) and answers only when the worker has caught up."""
    request = SleepRequest()
    request.duration.FromTimedelta(duration)
    await env.client.test_service.unlock_time_skipping_with_sleep(request, timeout=timedelta(minutes=2))


def line_q(s: OrderState, line_id: str) -> dict[str, int]:
    ln = next(x for x in s.lines if x.line_id == line_id)
    return {"ordered": ln.ordered, "reserved": ln.reserved, "picked": ln.picked, "shipped": ln.shipped,
            "released": ln.released}


def case_kinds(s: OrderState, status: str | None = None) -> set[str]:
    return {c["kind"] for c in s.exception_cases if status is None or c["status"] == status}


def cost(w: World, n: int, units: int) -> Decimal:
    return w.cost[w.skus[n]] * units


# --- dev server: update-with-start through dispatch -----------------------------------------------------------
async def test_ship_path_through_dispatch(dev_env: WorkflowEnvironment, database_url: str, engine: AsyncEngine,
                                          erp: PostgresErp) -> None:
    w = await world_with(erp, {(0, "dc"): 10, (1, "dc"): 30, (1, "store"): 1})
    order = new_order()
    wf = ids.order_workflow_id("web", order)
    async with worker_for(dev_env, database_url, engine) as settings:
        client = dev_env.client
        event = placed(order, [(w.skus[0], 2, "EA", "9.99"), (w.skus[1], 1, "CASE", "120.00")], location=w.store)
        result = await dispatch(client, event, settings)
        assert result.status == "started" and result.decision is not None
        d = result.decision
        assert d.decision is Decision.RESERVED and d.workflow_id == wf
        # the store cannot fill the order: the DC that can fill everything is chosen
        assert [(ln.line_id, ln.reserved_quantity, ln.location_id) for ln in d.lines] == [
            ("1", 2, w.dc), ("2", 12, w.dc)]
        # a redelivery (same webhook-id) and a second delivery (new id) answer the same decision
        again = await dispatch(client, event, settings)
        other = await dispatch(client, event.model_copy(update={"event_id": "another-delivery"}), settings)
        assert again.decision == d and other.decision == d
        assert await stock(erp, w, 0, w.dc) == {"available": 8, "reserved": 2}
        assert await stock(erp, w, 1, w.dc) == {"available": 18, "reserved": 12}

        await dispatch(client, picked(order, w.dc, {"1": 2, "2": 12}), settings)
        await dispatch(client, dispatched(order, "S1", w.dc, {"1": 2, "2": 12}), settings)
        handle = client.get_workflow_handle(wf)
        done = await outcome(handle)
        assert done.outcome == "fulfilled" and done.shipment_ids == ["S1"] and done.shipped_units == 14
        s = await state(handle)
        assert s.stage is OrderStage.FULFILLED and line_q(s, "2") == {
            "ordered": 12, "reserved": 0, "picked": 0, "shipped": 12, "released": 0}
        assert s.shipments[0].amount == Decimal("2") * Decimal("9.99") + Decimal("120.00")
        assert not s.payment_voided
        desc = await handle.describe()
        summary = await desc.static_summary()
        assert summary and f"web/{order}" in summary
        assert desc.typed_search_attributes.get(STAGE) == "fulfilled"
        await replayer().replay_workflow(await handle.fetch_history())  # deterministic on replay
    assert await stock(erp, w, 0, w.dc) == {"available": 8}
    assert await stock(erp, w, 1, w.dc) == {"available": 18}
    assert await stock(erp, w, 1, w.store) == {"available": 1}
    assert [k for k, _ in await movements(engine, wf)] == ["pick", "reserve", "ship"]
    j = await journal(engine, wf)
    assert j["cogs"] == cost(w, 0, 2) + cost(w, 1, 12) and j["inventory"] == -j["cogs"]
    await assert_checker_ok(database_url)


async def test_two_orders_race_for_the_last_unit(dev_env: WorkflowEnvironment, database_url: str,
                                                 engine: AsyncEngine, erp: PostgresErp) -> None:
    w = await world_with(erp, {(0, "dc"): 1})
    a, b = new_order(), new_order()
    async with worker_for(dev_env, database_url, engine) as settings:
        results = await asyncio.gather(*(
            dispatch(dev_env.client, placed(o, [(w.skus[0], 1, "EA", "9.99")]), settings) for o in (a, b)))
        decisions = sorted(r.decision.decision for r in results)  # type: ignore[union-attr]
        assert decisions == [Decision.REJECTED, Decision.RESERVED]
        loser = next(r for r in results if r.decision.decision is Decision.REJECTED)  # type: ignore[union-attr]
        assert loser.decision.lines[0].reason == "insufficient stock"  # type: ignore[union-attr]
        assert await stock(erp, w, 0, w.dc) == {"reserved": 1}
        lost = await outcome(dev_env.client.get_workflow_handle(loser.workflow_id))
        assert lost.outcome == "rejected"
        s = await state(dev_env.client.get_workflow_handle(loser.workflow_id))
        assert s.payment_voided and s.stage is OrderStage.REJECTED
        winner = next(r for r in results if r is not loser)
        await dispatch(dev_env.client, cancelled(winner.workflow_id.split(":")[-1]), settings)
        assert (await outcome(dev_env.client.get_workflow_handle(winner.workflow_id))).outcome == "cancelled"
    assert await stock(erp, w, 0, w.dc) == {"available": 1}
    await assert_checker_ok(database_url)


# --- release 3: cost, the decision before the pick task, continue-as-new --------------------------------------
ACTION_BUDGET = 12  # issue 19: ReserveToFulfill's share of the <= 20 actions of a one-shipment order lifecycle


async def test_the_standard_lifecycle_costs_at_most_its_action_budget(
        dev_env: WorkflowEnvironment, database_url: str, engine: AsyncEngine, erp: PostgresErp) -> None:
    """order.placed (update-with-start), fulfillment.picked, shipment.dispatched of one shipment, ship mode, the
    default SLA policy: counted from the run's real history by Temporal Cloud's rules (bench/cost.py)."""
    w = await world_with(erp, {(0, "dc"): 10})
    order = new_order()
    async with worker_for(dev_env, database_url, engine) as settings:
        client = dev_env.client
        decided = await dispatch(client, placed(order, [(w.skus[0], 2, "EA", "9.99")]), settings)
        assert decided.decision is not None and decided.decision.decision is Decision.RESERVED
        handle = client.get_workflow_handle(decided.workflow_id)
        await until(handle, lambda s: bool(s.decision), "decided")  # each event in a workflow task of its own,
        await dispatch(client, picked(order, w.dc, {"1": 2}), settings)  # as when the WMS takes its time
        await until(handle, lambda s: s.stage is OrderStage.AWAITING_DISPATCH, "picked")
        await dispatch(client, dispatched(order, "S1", w.dc, {"1": 2}), settings)
        assert (await outcome(handle)).outcome == "fulfilled"
        cost = count(await handle.fetch_history())
    print(f"ReserveToFulfill standard lifecycle: {cost.total} actions, {cost.events} history events",
          dict(sorted(cost.actions.items())))
    assert cost.total <= ACTION_BUDGET, dict(cost.actions)
    # where the budget goes: the reads, the reservation, the ship step and the close are local activities
    assert not {"activity lookup_items", "activity get_availability", "activity post_movement",
                "activity record_shipment", "activity forward_event", "activity close_process"} & set(cost.actions)
    assert cost.actions["activity create_pick_task"] == 1
    assert await stock(erp, w, 0, w.dc) == {"available": 8}
    await assert_checker_ok(database_url)


async def test_the_decision_is_answered_before_the_pick_task(
        dev_env: WorkflowEnvironment, database_url: str, engine: AsyncEngine, erp: PostgresErp) -> None:
    """The WMS is down: order.placed is answered all the same (the pick task is scheduled in the task that
    completes the update, and waits for the WMS); once the WMS is back, the pick task is created and the order
    goes on."""
    w = await world_with(erp, {(0, "dc"): 5})
    order = new_order()
    wms_down = {"wms.create_pick_task": FaultSpec(failure_rate=1.0)}
    async with worker_for(dev_env, database_url, engine, faults=wms_down) as settings:
        decided = await dispatch(dev_env.client, placed(order, [(w.skus[0], 1, "EA", "9.99")]), settings)
        assert decided.decision is not None and decided.decision.decision is Decision.RESERVED
        handle = dev_env.client.get_workflow_handle(decided.workflow_id)
        [pending] = (await handle.describe()).raw_description.pending_activities
        assert pending.activity_type.name == "create_pick_task"
        kinds = [e.event_type for e in (await handle.fetch_history()).events]
        answered = kinds.index(HistoryEvent.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED)
        assert kinds.index(HistoryEvent.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) > answered
        assert HistoryEvent.EVENT_TYPE_ACTIVITY_TASK_COMPLETED not in kinds
    async with worker_for(dev_env, database_url, engine, task_queue=settings.task_queue):  # the WMS is back
        await until(handle, lambda s: s.stage is OrderStage.AWAITING_PICK, "placed")
        await handle.signal(ReserveToFulfill.event, picked(order, w.dc, {"1": 1}))
        await handle.signal(ReserveToFulfill.event, dispatched(order, "S1", w.dc, {"1": 1}))
        assert (await outcome(handle)).outcome == "fulfilled"
        history = await handle.fetch_history()
    assert count(history).activity_types["create_pick_task"] == 1
    async with engine.connect() as conn:
        tasks = await conn.scalar(text("SELECT count(*) FROM pick_tasks WHERE order_id = :o"), {"o": order})
    assert tasks == 1
    assert await stock(erp, w, 0, w.dc) == {"available": 4}
    await assert_checker_ok(database_url)


async def test_a_long_history_continues_as_new_and_the_order_keeps_working(
        ts: Settings, module_time_skipping_env: WorkflowEnvironment, database_url: str, engine: AsyncEngine,
        erp: PostgresErp) -> None:
    """A WMS that redelivers the pick over and over with fresh webhook IDs: each is applied (a no-op) and the
    history grows; the order continues as new every few events, and still takes its events once, keeps its
    decision, its SLA clock (which breaches in a later run) and ships once."""
    w = await world_with(erp, {(0, "dc"): 5})
    order = new_order()
    client = module_time_skipping_env.client
    h = await start(client, ts, order, sla={SlaKind.SHIP_OVERDUE: timedelta(hours=6)}, continue_as_new_after=40)
    first_run = h.result_run_id
    event = placed(order, [(w.skus[0], 2, "EA", "9.99")])
    decision = await h.execute_update(ReserveToFulfill.place, event)
    pick = picked(order, w.dc, {"1": 2}, event_id="pick-1")
    await h.signal(ReserveToFulfill.event, pick)
    await until(h, lambda s: s.stage is OrderStage.AWAITING_DISPATCH, "picked")
    for n in range(25):  # each applied as a repeated pick of a picked location
        await h.signal(ReserveToFulfill.event, picked(order, w.dc, {"1": 2}, event_id=f"pick-again-{n}"))
        await h.signal(ReserveToFulfill.event, pick)  # a redelivery (same event ID): seen, across runs too
    s = await until(h, lambda s: not s.held_events, "redeliveries applied")
    runs = [e async for e in client.get_workflow_handle(h.id, run_id=first_run).fetch_history_events()]
    assert runs[-1].event_type == HistoryEvent.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    assert (await h.describe()).run_id != first_run
    assert s.stage is OrderStage.AWAITING_DISPATCH and line_q(s, "1")["picked"] == 2
    assert await h.execute_update(ReserveToFulfill.place, event.model_copy(update={"event_id": "again"})) == decision
    await skip(module_time_skipping_env, timedelta(hours=6, minutes=1))  # the clock came along
    s = await until(h, lambda s: "ship_overdue" in case_kinds(s, "open"), "ship_overdue case in a later run")
    await h.signal(ReserveToFulfill.event, dispatched(order, "S1", w.dc, {"1": 2}))
    done = await outcome(h)
    assert done.outcome == "fulfilled" and done.shipment_ids == ["S1"] and done.shipped_units == 2
    assert "ship_overdue" in case_kinds(await state(h), "resolved")
    assert (await h.describe()).typed_search_attributes.get(STAGE) == "fulfilled"
    assert await movements(engine, h.id) == [("pick", "pick:" + w.dc), ("reserve", "reserve:" + w.dc),
                                             ("ship", "ship:S1")]
    assert await stock(erp, w, 0, w.dc) == {"available": 3}
    assert (await journal(engine, h.id))["cogs"] == cost(w, 0, 2)
    settle = await settle_state(client, order, 1)
    assert [x.shipment_id for x in settle.shipments] == ["S1"]  # handed over once
    await assert_checker_ok(database_url)


# --- time-skipping server -----------------------------------------------------------------------------------
async def test_pickup_path(ts: Settings, module_time_skipping_env: WorkflowEnvironment, database_url: str, engine: AsyncEngine,
                           erp: PostgresErp) -> None:
    w = await world_with(erp, {(0, "store"): 5, (0, "dc"): 50})
    order = new_order()
    settings = ts
    h = await start(module_time_skipping_env.client, settings, order)
    d = await place(h, placed(order, [(w.skus[0], 3, "EA", "9.99")], mode="pickup", location=w.store))
    assert d.decision is Decision.RESERVED and d.lines[0].location_id == w.store
    assert await stock(erp, w, 0, w.store) == {"available": 2, "reserved": 3}
    await h.signal(ReserveToFulfill.event, picked(order, w.store, {"1": 3}))
    s = await until(h, lambda s: s.stage is OrderStage.AWAITING_COLLECTION, "picked")
    assert await stock(erp, w, 0, w.store) == {"available": 2, "picked": 3}
    await h.signal(ReserveToFulfill.event, collected(order, w.store))
    done = await outcome(h)
    assert done.outcome == "fulfilled" and done.shipment_ids == [f"pickup-{order}"]
    s = await state(h)
    assert s.shipments[0].carrier is None and line_q(s, "1")["shipped"] == 3
    assert await stock(erp, w, 0, w.store) == {"available": 2}
    assert await stock(erp, w, 0, w.dc) == {"available": 50}
    assert (await journal(engine, h.id))["cogs"] == cost(w, 0, 3)
    await assert_checker_ok(database_url)


async def test_split_shipment(ts: Settings, module_time_skipping_env: WorkflowEnvironment, database_url: str, engine: AsyncEngine,
                              erp: PostgresErp) -> None:
    w = await world_with(erp, {(0, "dc"): 10, (1, "dc"): 10})
    order = new_order()
    settings = ts
    h = await start(module_time_skipping_env.client, settings, order)
    d = await place(h, placed(order, [(w.skus[0], 4, "EA", "9.99"), (w.skus[1], 2, "EA", "10.99")]))
    assert d.decision is Decision.RESERVED
    await h.signal(ReserveToFulfill.event, picked(order, w.dc, {"1": 4, "2": 2}))
    await h.signal(ReserveToFulfill.event, dispatched(order, "S1", w.dc, {"1": 3}))
    s = await until(h, lambda s: len(s.shipments) == 1, "first shipment")
    assert s.stage is OrderStage.PARTIALLY_SHIPPED
    assert line_q(s, "1") == {"ordered": 4, "reserved": 0, "picked": 1, "shipped": 3, "released": 0}
    assert await stock(erp, w, 0, w.dc) == {"available": 6, "picked": 1}
    await h.signal(ReserveToFulfill.event, dispatched(order, "S2", w.dc, {"1": 1, "2": 2}))
    done = await outcome(h)
    assert done.outcome == "fulfilled" and done.shipment_ids == ["S1", "S2"]
    s = await state(h)
    assert [sh.lines for sh in s.shipments] == [{"1": 3}, {"1": 1, "2": 2}]
    assert [sh.amount for sh in s.shipments] == [Decimal("29.97"), Decimal("31.97")]
    assert await stock(erp, w, 0, w.dc) == {"available": 6}
    assert await stock(erp, w, 1, w.dc) == {"available": 8}
    assert [m for m in await movements(engine, h.id) if m[0] == "ship"] == [("ship", "ship:S1"), ("ship", "ship:S2")]
    assert (await journal(engine, h.id))["cogs"] == cost(w, 0, 4) + cost(w, 1, 2)
    await assert_checker_ok(database_url)


async def test_short_pick_releases_and_opens_a_case(ts: Settings, module_time_skipping_env: WorkflowEnvironment, database_url: str,
                                                    engine: AsyncEngine, erp: PostgresErp) -> None:
    w = await world_with(erp, {(0, "dc"): 10})
    order = new_order()
    settings = ts
    h = await start(module_time_skipping_env.client, settings, order)
    await place(h, placed(order, [(w.skus[0], 5, "EA", "9.99")]))
    await h.signal(ReserveToFulfill.event, picked(order, w.dc, {"1": 3}))
    s = await until(h, lambda s: s.stage is OrderStage.AWAITING_DISPATCH, "short pick applied")
    assert line_q(s, "1") == {"ordered": 5, "reserved": 0, "picked": 3, "shipped": 0, "released": 2}
    assert "short_pick" in case_kinds(s, "open")
    assert await stock(erp, w, 0, w.dc) == {"available": 7, "picked": 3}
    await h.signal(ReserveToFulfill.event, dispatched(order, "S1", w.dc, {"1": 3}))
    done = await outcome(h)
    assert done.outcome == "partially_fulfilled" and done.shipped_units == 3 and done.released_units == 2
    assert await stock(erp, w, 0, w.dc) == {"available": 7}
    assert (await journal(engine, h.id))["cogs"] == cost(w, 0, 3)
    await assert_checker_ok(database_url)


@pytest.mark.parametrize("policy", [PartialPolicy.ACCEPT, PartialPolicy.REJECT])
async def test_partial_availability(policy: PartialPolicy, ts: Settings, module_time_skipping_env: WorkflowEnvironment,
                                    database_url: str, engine: AsyncEngine, erp: PostgresErp) -> None:
    w = await world_with(erp, {(0, "dc"): 10, (1, "dc"): 2})
    order = new_order()
    settings = ts
    h = await start(module_time_skipping_env.client, settings, order, partial=policy)
    d = await place(h, placed(order, [(w.skus[0], 4, "EA", "9.99"), (w.skus[1], 5, "EA", "10.99")]))
    if policy is PartialPolicy.ACCEPT:
        assert d.decision is Decision.PARTIALLY_RESERVED
        assert [(ln.reserved_quantity, ln.reason) for ln in d.lines] == [(4, None), (2, "only 2 of 5 EA available")]
        assert await stock(erp, w, 0, w.dc) == {"available": 6, "reserved": 4}
        assert await stock(erp, w, 1, w.dc) == {"reserved": 2}
        await h.signal(ReserveToFulfill.event, cancelled(order))
        assert (await outcome(h)).outcome == "cancelled"
    else:
        assert d.decision is Decision.REJECTED
        assert all(ln.reserved_quantity == 0 for ln in d.lines)
        assert "partial" in (d.lines[0].reason or "")
        assert (await outcome(h)).outcome == "rejected"
        assert (await state(h)).payment_voided
        # reserved, then released whole
        assert [k for k, _ in await movements(engine, h.id)] == ["release", "reserve"]
    assert await stock(erp, w, 0, w.dc) == {"available": 10}
    assert await stock(erp, w, 1, w.dc) == {"available": 2}
    assert "cogs" not in await journal(engine, h.id)
    await assert_checker_ok(database_url)


async def test_unknown_sku_and_unknown_unit(ts: Settings, module_time_skipping_env: WorkflowEnvironment, database_url: str,
                                            engine: AsyncEngine, erp: PostgresErp) -> None:
    w = await world_with(erp, {(0, "dc"): 30})
    order = new_order()
    settings = ts
    h = await start(module_time_skipping_env.client, settings, order)
    d = await place(h, placed(order, [(w.skus[0], 1, "CASE", "100.00"), ("NO-SUCH-SKU", 1, "EA", "1.00"),
                                      (w.skus[0], 1, "PALLET", "1.00")]))
    assert d.decision is Decision.PARTIALLY_RESERVED
    assert [(ln.line_id, ln.reserved_quantity) for ln in d.lines] == [("1", 12), ("2", 0), ("3", 0)]
    assert d.lines[1].reason == "unknown SKU 'NO-SUCH-SKU'"
    assert "unit 'PALLET' is not defined" in (d.lines[2].reason or "")
    assert await stock(erp, w, 0, w.dc) == {"available": 18, "reserved": 12}
    await h.signal(ReserveToFulfill.event, cancelled(order))
    assert (await outcome(h)).outcome == "cancelled"
    # all lines unknown: rejected, nothing moved
    order2 = new_order()
    h2 = await start(module_time_skipping_env.client, settings, order2)
    d2 = await place(h2, placed(order2, [("NOPE", 1, "EA", "1.00")]))
    assert d2.decision is Decision.REJECTED and (await outcome(h2)).outcome == "rejected"
    assert await movements(engine, h2.id) == []
    assert await stock(erp, w, 0, w.dc) == {"available": 30}
    await assert_checker_ok(database_url)


async def test_cancel_before_pick(ts: Settings, module_time_skipping_env: WorkflowEnvironment, database_url: str, engine: AsyncEngine,
                                  erp: PostgresErp) -> None:
    w = await world_with(erp, {(0, "dc"): 10})
    order = new_order()
    settings = ts
    h = await start(module_time_skipping_env.client, settings, order)
    await place(h, placed(order, [(w.skus[0], 4, "EA", "9.99")]))
    result = await h.execute_update(ReserveToFulfill.cancel, CancelRequest(reason="fraud suspected"), result_type=CancelResult)
    assert [(r.line_id, r.released, r.unpicked) for r in result.released] == [("1", 4, 0)]
    assert result.payment_voided and result.shipped_units == 0
    done = await outcome(h)
    assert done.outcome == "cancelled" and done.released_units == 4
    assert (await state(h)).cancel_reason == "fraud suspected"
    assert await stock(erp, w, 0, w.dc) == {"available": 10}
    assert "cogs" not in await journal(engine, h.id)
    await assert_checker_ok(database_url)


async def test_cancel_after_pick(ts: Settings, module_time_skipping_env: WorkflowEnvironment, database_url: str, engine: AsyncEngine,
                                 erp: PostgresErp) -> None:
    w = await world_with(erp, {(0, "dc"): 10})
    order = new_order()
    settings = ts
    h = await start(module_time_skipping_env.client, settings, order)
    await place(h, placed(order, [(w.skus[0], 4, "EA", "9.99")]))
    await h.signal(ReserveToFulfill.event, picked(order, w.dc, {"1": 4}))
    await until(h, lambda s: s.stage is OrderStage.AWAITING_DISPATCH, "picked")
    assert await stock(erp, w, 0, w.dc) == {"available": 6, "picked": 4}
    await h.signal(ReserveToFulfill.event, cancelled(order))
    done = await outcome(h)
    assert done.outcome == "cancelled"
    s = await state(h)
    assert s.payment_voided and line_q(s, "1")["released"] == 4
    assert await stock(erp, w, 0, w.dc) == {"available": 10}
    assert sorted(k for k, _ in await movements(engine, h.id)) == ["pick", "reserve", "unpick"]
    await assert_checker_ok(database_url)


async def test_cancel_after_partial_dispatch(ts: Settings, module_time_skipping_env: WorkflowEnvironment, database_url: str,
                                             engine: AsyncEngine, erp: PostgresErp) -> None:
    w = await world_with(erp, {(0, "dc"): 10, (1, "dc"): 10})
    order = new_order()
    settings = ts
    h = await start(module_time_skipping_env.client, settings, order)
    await place(h, placed(order, [(w.skus[0], 4, "EA", "9.99"), (w.skus[1], 2, "EA", "10.99")]))
    await h.signal(ReserveToFulfill.event, picked(order, w.dc, {"1": 4, "2": 2}))
    await h.signal(ReserveToFulfill.event, dispatched(order, "S1", w.dc, {"1": 4}))
    await until(h, lambda s: len(s.shipments) == 1, "first shipment")
    result = await h.execute_update(ReserveToFulfill.cancel, CancelRequest(reason="rest out of date"), result_type=CancelResult)
    assert [(r.line_id, r.released, r.unpicked) for r in result.released] == [("2", 0, 2)]
    assert not result.payment_voided and result.shipped_units == 4
    done = await outcome(h)
    assert done.outcome == "partially_fulfilled" and done.shipment_ids == ["S1"]
    assert not (await state(h)).payment_voided
    await replayer().replay_workflow(await h.fetch_history())
    assert await stock(erp, w, 0, w.dc) == {"available": 6}
    assert await stock(erp, w, 1, w.dc) == {"available": 10}
    assert (await journal(engine, h.id))["cogs"] == cost(w, 0, 4)
    await assert_checker_ok(database_url)


async def test_duplicate_events(ts: Settings, module_time_skipping_env: WorkflowEnvironment, database_url: str, engine: AsyncEngine,
                                erp: PostgresErp) -> None:
    w = await world_with(erp, {(0, "dc"): 10})
    order = new_order()
    settings = ts
    h = await start(module_time_skipping_env.client, settings, order)
    event = placed(order, [(w.skus[0], 2, "EA", "9.99")])
    first = await place(h, event)
    assert await place(h, event) == first
    assert await place(h, event.model_copy(update={"event_id": "redelivered"})) == first
    with pytest.raises(WorkflowUpdateFailedError):  # the validator refuses another order's event
        await place(h, placed(new_order(), [(w.skus[0], 1, "EA", "9.99")]))
    pick = picked(order, w.dc, {"1": 2}, event_id="pick-1")
    await h.signal(ReserveToFulfill.event, pick)
    await h.signal(ReserveToFulfill.event, pick)
    await h.signal(ReserveToFulfill.event, picked(order, w.dc, {"1": 1}, event_id="pick-2"))  # same pick, new id
    ship = dispatched(order, "S1", w.dc, {"1": 2})
    await h.signal(ReserveToFulfill.event, ship)
    await h.signal(ReserveToFulfill.event, ship.model_copy(update={"event_id": "ship-again"}))
    done = await outcome(h)
    assert done.outcome == "fulfilled" and done.shipped_units == 2 and done.shipment_ids == ["S1"]
    assert await stock(erp, w, 0, w.dc) == {"available": 8}
    assert [k for k, _ in await movements(engine, h.id)] == ["pick", "reserve", "ship"]
    assert (await journal(engine, h.id))["cogs"] == cost(w, 0, 2)
    await assert_checker_ok(database_url)


async def test_out_of_order_events_are_held(ts: Settings, module_time_skipping_env: WorkflowEnvironment, database_url: str,
                                            engine: AsyncEngine, erp: PostgresErp) -> None:
    w = await world_with(erp, {(0, "dc"): 10})
    order = new_order()
    settings = ts
    # the dispatch comes first and opens the process; the pick next; the order last
    h = await start(module_time_skipping_env.client, settings, order, first=dispatched(order, "S1", w.dc, {"1": 2}))
    await h.signal(ReserveToFulfill.event, picked(order, w.dc, {"1": 2}))
    s = await until(h, lambda s: len(s.held_events) == 2, "events held")
    assert s.stage is OrderStage.AWAITING_ORDER and s.held_events == ["shipment.dispatched", "fulfillment.picked"]
    assert await stock(erp, w, 0, w.dc) == {"available": 10}
    d = await place(h, placed(order, [(w.skus[0], 2, "EA", "9.99")]))
    assert d.decision is Decision.RESERVED
    done = await outcome(h)
    assert done.outcome == "fulfilled" and done.shipment_ids == ["S1"]
    assert await stock(erp, w, 0, w.dc) == {"available": 8}
    await assert_checker_ok(database_url)


async def test_never_opened_ends_cleanly(ts: Settings, module_time_skipping_env: WorkflowEnvironment, database_url: str,
                                         engine: AsyncEngine, erp: PostgresErp) -> None:
    order = new_order()
    settings = ts
    h = await start(module_time_skipping_env.client, settings, order, open_timeout=timedelta(hours=1),
                    first=cancelled(order))
    done = await outcome(h)  # time skips past the open timeout
    assert done.outcome == "never_opened" and done.stage is OrderStage.NEVER_OPENED
    assert await movements(engine, h.id) == []


# --- SLA clocks (time-skipping) -----------------------------------------------------------------------------
async def test_sla_pick_overdue(ts: Settings, module_time_skipping_env: WorkflowEnvironment, database_url: str, engine: AsyncEngine,
                                erp: PostgresErp) -> None:
    w = await world_with(erp, {(0, "dc"): 10})
    order = new_order()
    env = module_time_skipping_env
    settings = ts
    h = await start(env.client, settings, order)
    await place(h, placed(order, [(w.skus[0], 1, "EA", "9.99")]))
    await skip(env, timedelta(hours=4, minutes=1))
    s = await until(h, lambda s: "pick_overdue" in case_kinds(s, "open"), "pick_overdue case")
    assert case_kinds(s, "open") == {"pick_overdue"}  # ship/authorization clocks still running
    assert s.stage is OrderStage.AWAITING_PICK  # a breach never fails the process
    await h.signal(ReserveToFulfill.event, picked(order, w.dc, {"1": 1}))
    s = await until(h, lambda s: "pick_overdue" in case_kinds(s, "resolved"), "pick_overdue resolved")
    await h.signal(ReserveToFulfill.event, dispatched(order, "S1", w.dc, {"1": 1}))
    assert (await outcome(h)).outcome == "fulfilled"
    assert await stock(erp, w, 0, w.dc) == {"available": 9}
    await assert_checker_ok(database_url)


async def test_sla_ship_overdue(ts: Settings, module_time_skipping_env: WorkflowEnvironment, database_url: str, engine: AsyncEngine,
                                erp: PostgresErp) -> None:
    w = await world_with(erp, {(0, "dc"): 10})
    order = new_order()
    env = module_time_skipping_env
    settings = ts
    h = await start(env.client, settings, order, sla={SlaKind.SHIP_OVERDUE: timedelta(hours=6)})
    await place(h, placed(order, [(w.skus[0], 1, "EA", "9.99")]))
    await h.signal(ReserveToFulfill.event, picked(order, w.dc, {"1": 1}))
    await until(h, lambda s: s.stage is OrderStage.AWAITING_DISPATCH, "picked")
    await skip(env, timedelta(hours=6, minutes=1))
    s = await until(h, lambda s: "ship_overdue" in case_kinds(s), "ship_overdue case")
    assert case_kinds(s, "open") == {"ship_overdue"}
    await h.signal(ReserveToFulfill.event, dispatched(order, "S1", w.dc, {"1": 1}))
    assert (await outcome(h)).outcome == "fulfilled"
    assert "ship_overdue" in case_kinds(await state(h), "resolved")
    assert await stock(erp, w, 0, w.dc) == {"available": 9}
    await assert_checker_ok(database_url)


async def test_sla_authorization_expiring(ts: Settings, module_time_skipping_env: WorkflowEnvironment, database_url: str,
                                          engine: AsyncEngine, erp: PostgresErp) -> None:
    w = await world_with(erp, {(0, "dc"): 10})
    order = new_order()
    env = module_time_skipping_env
    settings = ts
    # a short deadline (per-channel SLA settings reach the process through its policy): skipping six days
    # would also fire every timer the earlier tests' processes left running on this shared server
    h = await start(env.client, settings, order, sla={SlaKind.AUTHORIZATION_EXPIRING: timedelta(hours=2)})
    await place(h, placed(order, [(w.skus[0], 1, "EA", "9.99")]))
    await h.signal(ReserveToFulfill.event, picked(order, w.dc, {"1": 1}))
    await until(h, lambda s: s.stage is OrderStage.AWAITING_DISPATCH, "picked")
    await skip(env, timedelta(hours=2, minutes=1))
    s = await until(h, lambda s: "authorization_expiring" in case_kinds(s), "authorization case")
    assert case_kinds(s, "open") == {"authorization_expiring"}
    await h.signal(ReserveToFulfill.event, cancelled(order, "payment about to lapse"))
    assert (await outcome(h)).outcome == "cancelled"
    s = await state(h)
    assert s.payment_voided and not case_kinds(s, "open")
    assert await stock(erp, w, 0, w.dc) == {"available": 10}
    await assert_checker_ok(database_url)


async def test_sla_pickup_expired_releases_cancels_and_voids(ts: Settings, module_time_skipping_env: WorkflowEnvironment,
                                                             database_url: str, engine: AsyncEngine,
                                                             erp: PostgresErp) -> None:
    w = await world_with(erp, {(0, "store"): 5})
    order = new_order()
    env = module_time_skipping_env
    settings = ts
    h = await start(env.client, settings, order, sla={SlaKind.PICKUP_EXPIRED: timedelta(hours=3)})
    await place(h, placed(order, [(w.skus[0], 2, "EA", "9.99")], mode="pickup", location=w.store))
    await h.signal(ReserveToFulfill.event, picked(order, w.store, {"1": 2}))
    await until(h, lambda s: s.stage is OrderStage.AWAITING_COLLECTION, "picked")
    done = await outcome(h)  # waiting for the result lets time skip to the pickup deadline
    assert done.outcome == "expired" and done.released_units == 2
    s = await state(h)
    assert s.payment_voided and s.stage is OrderStage.CANCELLED
    assert case_kinds(s, "open") == {"pickup_expired"}  # stays open for ops; the pick clock was met
    await replayer().replay_workflow(await h.fetch_history())
    assert await stock(erp, w, 0, w.store) == {"available": 5}
    assert sorted(k for k, _ in await movements(engine, h.id)) == ["pick", "reserve", "unpick"]
    assert "cogs" not in await journal(engine, h.id)
    await assert_checker_ok(database_url)



async def test_safety_stock_sends_the_order_to_another_node(dev_env: WorkflowEnvironment, database_url: str,
                                                           engine: AsyncEngine, erp: PostgresErp) -> None:
    w = await world_with(erp, {(0, "store"): 3, (0, "dc"): 3})
    order = new_order()
    async with worker_for(dev_env, database_url, engine, safety_stock={w.store: 2}) as settings:
        result = await dispatch(dev_env.client, placed(order, [(w.skus[0], 2, "EA", "9.99")], location=w.store),
                                settings)
        assert result.decision is not None and result.decision.decision is Decision.RESERVED
        # the store holds 3 but keeps 2 back: only 1 sellable, so the DC that can fill the order is chosen
        assert result.decision.lines[0].location_id == w.dc
        assert await stock(erp, w, 0, w.store) == {"available": 3}
        assert await stock(erp, w, 0, w.dc) == {"available": 1, "reserved": 2}
        await dispatch(dev_env.client, cancelled(order), settings)
        assert (await outcome(dev_env.client.get_workflow_handle(result.workflow_id))).outcome == "cancelled"
    assert await stock(erp, w, 0, w.dc) == {"available": 3}
    await assert_checker_ok(database_url)


async def test_lines_from_two_locations_pick_and_ship_per_location(
        ts: Settings, module_time_skipping_env: WorkflowEnvironment, database_url: str, engine: AsyncEngine,
        erp: PostgresErp) -> None:
    w = await world_with(erp, {(0, "dc"): 5, (1, "store"): 5})
    order = new_order()
    h = await start(module_time_skipping_env.client, ts, order)
    d = await place(h, placed(order, [(w.skus[0], 2, "EA", "9.99"), (w.skus[1], 1, "EA", "10.99")]))
    assert d.decision is Decision.RESERVED
    assert [(ln.line_id, ln.location_id) for ln in d.lines] == [("1", w.dc), ("2", w.store)]
    # the store ships before the DC has picked: each location goes its own way
    await h.signal(ReserveToFulfill.event, picked(order, w.store, {"2": 1}))
    await h.signal(ReserveToFulfill.event, dispatched(order, "S-store", w.store, {"2": 1}))
    s = await until(h, lambda s: len(s.shipments) == 1, "store shipment")
    assert s.stage is OrderStage.PARTIALLY_SHIPPED and line_q(s, "1")["reserved"] == 2
    await h.signal(ReserveToFulfill.event, picked(order, w.dc, {"1": 2}))
    await h.signal(ReserveToFulfill.event, dispatched(order, "S-dc", w.dc, {"1": 2}))
    done = await outcome(h)
    assert done.outcome == "fulfilled" and done.shipment_ids == ["S-store", "S-dc"]
    assert await stock(erp, w, 0, w.dc) == {"available": 3}
    assert await stock(erp, w, 1, w.store) == {"available": 4}
    assert sorted(k for k, _ in await movements(engine, h.id)) == ["pick", "pick", "reserve", "reserve", "ship", "ship"]
    assert (await journal(engine, h.id))["cogs"] == cost(w, 0, 2) + cost(w, 1, 1)
    await assert_checker_ok(database_url)


# --- release 2: a cancel asks the WMS, a dispatch after cancel is the truth, line amounts without drift -----------
async def settle_state(client: Client, order_id: str, shipments: int, seconds: float = 30.0) -> "SettleState":
    """The order's ShipToSettle once it has recognised `shipments` shipments (handed over asynchronously)."""

    handle = client.get_workflow_handle(ids.settle_workflow_id("web", order_id))
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        try:
            s = await handle.query(ShipToSettle.state)
            if len(s.shipments) >= shipments and all(x.capture_key for x in s.shipments):
                return s
        except RPCError:
            pass  # not started yet
        assert asyncio.get_running_loop().time() < deadline, f"ShipToSettle never saw {shipments} shipment(s)"
        await asyncio.sleep(0.1)


async def interceptions(engine: AsyncEngine, order_id: str) -> list[tuple[str, str]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT location_id, answer FROM wms_interceptions WHERE order_id = :o AND kind = 'cancel' "
            "ORDER BY location_id"), {"o": order_id})).all()
    return [(loc, answer) for loc, answer in rows]


async def test_cancel_after_pick_the_wms_intercepts(ts: Settings, module_time_skipping_env: WorkflowEnvironment,
                                                    database_url: str, engine: AsyncEngine, erp: PostgresErp) -> None:
    w = await world_with(erp, {(0, "dc"): 10})
    order = new_order()
    h = await start(module_time_skipping_env.client, ts, order)
    await place(h, placed(order, [(w.skus[0], 4, "EA", "9.99")]))
    await h.signal(ReserveToFulfill.event, picked(order, w.dc, {"1": 4}))
    await until(h, lambda s: s.stage is OrderStage.AWAITING_DISPATCH, "picked")
    result = await h.execute_update(ReserveToFulfill.cancel, CancelRequest(reason="customer asked"), result_type=CancelResult)
    assert [(r.line_id, r.released, r.unpicked) for r in result.released] == [("1", 0, 4)]
    assert result.payment_voided and result.awaiting_dispatch == []
    assert (await outcome(h)).outcome == "cancelled"
    s = await state(h)
    assert s.intercepted_locations == [w.dc] and s.awaiting_dispatch == []
    assert await interceptions(engine, order) == [(w.dc, "intercepted")]
    assert await stock(erp, w, 0, w.dc) == {"available": 10}
    assert sorted(k for k, _ in await movements(engine, h.id)) == ["pick", "reserve", "unpick"]
    assert "cogs" not in await journal(engine, h.id)
    await assert_checker_ok(database_url)


async def test_cancel_after_pick_already_dispatched_waits_for_the_parcel_and_bills_it(
        ts: Settings, module_time_skipping_env: WorkflowEnvironment, database_url: str, engine: AsyncEngine,
        erp: PostgresErp) -> None:
    from adapters.stub_wms import PostgresWms

    w = await world_with(erp, {(0, "dc"): 10})
    order = new_order()
    client = module_time_skipping_env.client
    h = await start(client, ts, order)
    await place(h, placed(order, [(w.skus[0], 4, "EA", "9.99")]))
    await h.signal(ReserveToFulfill.event, picked(order, w.dc, {"1": 4}))
    await until(h, lambda s: s.stage is OrderStage.AWAITING_DISPATCH, "picked")
    await PostgresWms(engine).mark_parcel_left("web", order, w.dc)  # the truck left before the cancel came
    result = await h.execute_update(ReserveToFulfill.cancel, CancelRequest(reason="too late"), result_type=CancelResult)
    assert result.released == [] and result.awaiting_dispatch == [w.dc] and not result.payment_voided
    s = await state(h)
    assert s.awaiting_dispatch == [w.dc] and s.stage is OrderStage.AWAITING_DISPATCH
    assert await stock(erp, w, 0, w.dc) == {"available": 6, "picked": 4}  # never put back: they are gone
    await h.signal(ReserveToFulfill.event, dispatched(order, "S1", w.dc, {"1": 4}))
    done = await outcome(h)
    assert done.shipped_units == 4 and done.shipment_ids == ["S1"] and done.released_units == 0
    assert not (await state(h)).payment_voided
    assert await interceptions(engine, order) == [(w.dc, "already_dispatched")]
    assert await stock(erp, w, 0, w.dc) == {"available": 6}
    assert (await journal(engine, h.id))["cogs"] == cost(w, 0, 4)
    billed = await settle_state(client, order, 1)  # billed through the normal hand-over
    assert billed.totals.shipped == billed.totals.captured == Decimal("39.96")
    await replayer().replay_workflow(await h.fetch_history())
    await assert_checker_ok(database_url)


async def test_dispatch_after_cancel_put_units_back_is_the_truth_and_billed(
        ts: Settings, module_time_skipping_env: WorkflowEnvironment, database_url: str, engine: AsyncEngine,
        erp: PostgresErp) -> None:
    """Two locations: the WMS intercepts at the DC (units put back) but not at the far store (already
    dispatched), so the order stays open. Then the DC reports its parcel left after all: its units are taken out
    of the ledger again and billed, since the payment was never voided."""
    from adapters.stub_wms import PostgresWms

    w = await world_with(erp, {(0, "dc"): 10, (1, "far"): 10})
    order = new_order()
    client = module_time_skipping_env.client
    h = await start(client, ts, order)
    d = await place(h, placed(order, [(w.skus[0], 2, "EA", "9.99"), (w.skus[1], 1, "EA", "10.99")]))
    assert [ln.location_id for ln in d.lines] == [w.dc, w.far]
    await h.signal(ReserveToFulfill.event, picked(order, w.dc, {"1": 2}))
    await h.signal(ReserveToFulfill.event, picked(order, w.far, {"2": 1}))
    await until(h, lambda s: len(s.picked_locations) == 2, "picked at both")
    await PostgresWms(engine).mark_parcel_left("web", order, w.far)
    await h.signal(ReserveToFulfill.event, cancelled(order))
    s = await until(h, lambda s: len(s.intercepted_locations) + len(s.awaiting_dispatch) == 2
                    and not line_q(s, "1")["picked"], "the WMS answered both")
    assert s.intercepted_locations == [w.dc] and s.awaiting_dispatch == [w.far] and not s.payment_voided
    assert await stock(erp, w, 0, w.dc) == {"available": 10}
    assert await stock(erp, w, 1, w.far) == {"available": 9, "picked": 1}
    await h.signal(ReserveToFulfill.event, dispatched(order, "S1", w.dc, {"1": 2}))  # the DC's parcel left anyway
    s = await until(h, lambda s: len(s.shipments) == 1, "dispatch after cancel applied")
    assert line_q(s, "1") == {"ordered": 2, "reserved": 0, "picked": 0, "shipped": 2, "released": 0}
    assert await stock(erp, w, 0, w.dc) == {"available": 8}  # no phantom stock
    await h.signal(ReserveToFulfill.event, dispatched(order, "S2", w.far, {"2": 1}))
    done = await outcome(h)
    assert done.shipped_units == 3 and done.shipment_ids == ["S1", "S2"]
    assert await stock(erp, w, 1, w.far) == {"available": 9}
    assert {k for _, k in await movements(engine, h.id)} >= {"after-cancel-reserve:S1", "after-cancel-pick:S1",
                                                             "ship:S1", "ship:S2"}
    assert (await journal(engine, h.id))["cogs"] == cost(w, 0, 2) + cost(w, 1, 1)
    billed = await settle_state(client, order, 2)
    assert billed.totals.captured == Decimal("2") * Decimal("9.99") + Decimal("10.99")
    assert "shipped_after_cancel" not in case_kinds(await state(h))
    await replayer().replay_workflow(await h.fetch_history())
    await assert_checker_ok(database_url)


async def test_dispatch_after_cancel_with_the_payment_voided_opens_a_case(
        ts: Settings, module_time_skipping_env: WorkflowEnvironment, database_url: str, engine: AsyncEngine,
        erp: PostgresErp) -> None:
    """The WMS reported the dispatch (held: no pick yet) before the cancel was applied; the cancel was
    intercepted and voided the payment. The dispatch is still the truth: the units leave the ledger, and since
    nothing can be billed any more, a shipped_after_cancel case opens for ops."""
    w = await world_with(erp, {(0, "dc"): 10})
    order = new_order()
    client = module_time_skipping_env.client
    h = await start(client, ts, order)
    await place(h, placed(order, [(w.skus[0], 2, "EA", "9.99")]))
    await h.signal(ReserveToFulfill.event, dispatched(order, "S1", w.dc, {"1": 2}))
    await until(h, lambda s: s.held_events == ["shipment.dispatched"], "dispatch held")
    await h.signal(ReserveToFulfill.event, cancelled(order))
    done = await outcome(h)
    assert done.shipped_units == 2 and done.shipment_ids == ["S1"]
    s = await state(h)
    assert s.payment_voided and s.intercepted_locations == [w.dc] and not s.shipments[0].billed
    assert s.shipments[0].amount == Decimal("19.98")
    assert "shipped_after_cancel" in case_kinds(s, "open")
    case = next(c for c in s.exception_cases if c["kind"] == "shipped_after_cancel")
    assert "S1" in case["summary"]
    assert await stock(erp, w, 0, w.dc) == {"available": 8}
    assert (await journal(engine, h.id))["cogs"] == cost(w, 0, 2)
    with pytest.raises(RPCError):  # nothing handed to ShipToSettle: no capture on a voided payment
        await client.get_workflow_handle(ids.settle_workflow_id("web", order)).describe()
    await assert_checker_ok(database_url)


async def test_split_shipments_of_a_line_add_up_to_the_cent(
        ts: Settings, module_time_skipping_env: WorkflowEnvironment, database_url: str, engine: AsyncEngine,
        erp: PostgresErp) -> None:
    """A 10.00 line of one PACK of 3 shipped unit by unit: 3.33 + 3.34 + 3.33, revenue and capture exactly
    10.00 (1.0 rounded a price per EA to 4 decimals: 3 x 3.33 = 9.99), then settled with nothing left."""
    from domain.items import Item
    from domain.settlement import SettleOutcome, SettleStage

    w = await world_with(erp, {})
    sku = f"PACK3-{w.prefix}"
    await erp.add_master_data([Item(sku=sku, name="three-pack", barcode=f"P3{w.prefix}",
                                    units={"EA": 1, "PACK": 3}, unit_cost=Decimal("1.00"),
                                    price=Decimal("10.00"))], [])
    await erp.post_movement(movement(w.key("open:pack"), MovementKind.RECEIPT, line(sku, w.dc, 3)))
    order = new_order()
    client = module_time_skipping_env.client
    h = await start(client, ts, order)
    d = await place(h, placed(order, [(sku, 1, "PACK", "10.00")]))
    assert d.decision is Decision.RESERVED and d.lines[0].reserved_quantity == 3
    await h.signal(ReserveToFulfill.event, picked(order, w.dc, {"1": 3}))
    for n in range(3):
        await h.signal(ReserveToFulfill.event, dispatched(order, f"S{n + 1}", w.dc, {"1": 1}))
        await until(h, lambda s, n=n: len(s.shipments) == n + 1, f"shipment {n + 1}")
    done = await outcome(h)
    assert done.outcome == "fulfilled"
    s = await state(h)
    assert [x.amount for x in s.shipments] == [Decimal("3.33"), Decimal("3.34"), Decimal("3.33")]
    settle = await settle_state(client, order, 3)
    assert settle.totals.shipped == settle.totals.captured == Decimal("10.00")
    assert [x.lines[0].amount for x in settle.shipments] == [Decimal("3.33"), Decimal("3.34"), Decimal("3.33")]
    await dispatch(client, ev(EventType.PAYMENT_SETTLED, {"payment_id": f"pay-{order}", "order_id": order,
                                                          "channel": "web", "amount": "10.00", "currency": "USD"},
                              source="payments"), ts)
    settled = await client.get_workflow_handle(ids.settle_workflow_id("web", order),
                                               result_type=SettleOutcome).result()
    assert settled.stage is SettleStage.SETTLED and settled.totals.settled == Decimal("10.00")
    money = await journal(engine, ids.settle_workflow_id("web", order))
    assert money == {"revenue": Decimal("-10.00"), "cash_clearing": Decimal("10.00")}  # receivable cleared
    assert (await journal(engine, h.id))["cogs"] == Decimal("3.00")
    await assert_checker_ok(database_url)


async def test_item_priced_in_another_currency_is_refused(
        ts: Settings, module_time_skipping_env: WorkflowEnvironment, database_url: str, engine: AsyncEngine,
        erp: PostgresErp) -> None:
    from domain.items import Item

    w = await world_with(erp, {(0, "dc"): 5})
    sku = f"EUR-{w.prefix}"
    await erp.add_master_data([Item(sku=sku, name="euro item", barcode=f"E{w.prefix}", units={"EA": 1},
                                    unit_cost=Decimal("1.00"), price=Decimal("5.00"), currency="EUR")], [])
    await erp.post_movement(movement(w.key("open:eur"), MovementKind.RECEIPT, line(sku, w.dc, 5)))
    order = new_order()
    h = await start(module_time_skipping_env.client, ts, order)
    d = await place(h, placed(order, [(sku, 1, "EA", "5.00"), (w.skus[0], 1, "EA", "9.99")]))
    assert d.decision is Decision.PARTIALLY_RESERVED
    assert [(ln.reserved_quantity, ln.reason) for ln in d.lines] == [
        (0, f"item {sku} is priced in EUR, the order is in USD"), (1, None)]
    assert await stock(erp, w, 0, w.dc) == {"available": 4, "reserved": 1}
    assert (await buckets(erp, sku, w.dc))[Bucket.AVAILABLE] == 5  # never reserved
    await h.signal(ReserveToFulfill.event, cancelled(order))
    assert (await outcome(h)).outcome == "cancelled"
    assert await stock(erp, w, 0, w.dc) == {"available": 5}
    await assert_checker_ok(database_url)

"""ShipToSettle on the time-skipping server, driven by events through `client.dispatch.dispatch` exactly as the
webhooks and ReserveToFulfill drive it (signal-with-start). ReserveToFulfill is not run: the tests hand over
`order.shipped` themselves and post the SHIP movement (which carries COGS) the way it would.

Every test asserts the journal of the order (revenue, COGS, receivable, cash clearing, per legal entity) and
that the invariant checker passes.
"""
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.enums.v1 import EventType as HistoryEvent
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from adapters.stub_erp import PostgresErp
from bench import cost
from client.dispatch import dispatch
from client.names import BUSINESS_KEY, LOCATION_IDS, OPEN_EXCEPTIONS, SKUS, SLA_BREACHED, STAGE
from config.settings import Settings
from devtools.histories import replayer
from domain import ids
from domain.cases import CaseSnapshot
from domain.events import (
    Event,
    EventType,
    OrderClosed,
    OrderShipped,
    Payment,
    PaymentSettled,
    PricedLine,
    ShipmentDelivered,
)
from domain.inventory import MovementKind
from domain.process import ProcessInput
from domain.settlement import SettleOutcome, SettleStage, SettleState
from domain.sla import SlaKind
from tests import support
from tests.ledger_helpers import World, line, movement
from tests.support import assert_checker_ok, register_search_attributes, temporal_test_server, unique
from tests.support import test_settings as make_settings
from worker.factory import build_worker
from workflows.exception_case import ExceptionCase
from workflows.ship_to_settle import ShipToSettle

D = Decimal
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest_asyncio.fixture(loop_scope="session")
async def world(engine: AsyncEngine) -> World:
    return await World().create(PostgresErp(engine))


@pytest_asyncio.fixture(loop_scope="session")
async def own_time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of its own for the tests that skip days: cases left open by other tests (their
    escalation timers due on task queues nobody polls any more) would otherwise hold the clock."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=temporal_test_server())
    await register_search_attributes(env.client)
    try:
        yield env
    finally:
        await env.shutdown()


class Order:
    """One order's events, built the way the webhooks and ReserveToFulfill build them."""

    def __init__(self, world: World, authorized: str = "100.00", channel: str = "web") -> None:
        self.world = world
        self.channel = channel
        self.order_id = unique("o")
        self.payment = Payment(payment_id=unique("pay"), authorized_amount=D(authorized))
        self.workflow_id = ids.settle_workflow_id(channel, self.order_id)
        self.order_workflow_id = ids.order_workflow_id(channel, self.order_id)
        self.shipment_ids: list[str] = []

    def shipped(self, shipment_id: str, location_id: str, *lines: tuple[int, int], closing: bool = False) -> Event:
        """`lines`: (sku index, quantity), priced at the item's price. `closing`: the shipment that ends the
        order carries the close (release 3's ReserveToFulfill: one hand-over)."""
        self.shipment_ids.append(shipment_id)
        priced = [PricedLine(line_id=f"l{n}", sku=self.world.skus[n], quantity=q,
                             unit_price=D(self.world.items[n].price)) for n, q in lines]
        closed = self.closed().data if closing else None
        assert closed is None or isinstance(closed, OrderClosed)
        return Event(event_id=f"{self.order_workflow_id}:shipped:{shipment_id}", type=EventType.ORDER_SHIPPED,
                     occurred_at=T0, source="retailflow",
                     data=OrderShipped(order_id=self.order_id, channel=self.channel, shipment_id=shipment_id,
                                       location_id=location_id, currency="USD", payment=self.payment,
                                       lines=priced, closed=closed))

    def settled(self, amount: str, event_id: str | None = None, at: datetime = T0, *, fee: str | None = None,
                payment_id: str | None = None, currency: str = "USD") -> Event:
        return Event(event_id=event_id or unique("wh"), type=EventType.PAYMENT_SETTLED, occurred_at=at,
                     source="payments", data=PaymentSettled(payment_id=payment_id or self.payment.payment_id,
                                                            order_id=self.order_id, channel=self.channel,
                                                            amount=D(amount), currency=currency,
                                                            fee=D(fee) if fee is not None else None))

    def delivered(self, shipment_id: str) -> Event:
        return Event(event_id=unique("wh"), type=EventType.SHIPMENT_DELIVERED, occurred_at=T0, source="carrier",
                     data=ShipmentDelivered(shipment_id=shipment_id, order_id=self.order_id, channel=self.channel))

    def closed(self, outcome: str = "fulfilled") -> Event:
        return Event(event_id=f"{self.order_workflow_id}:closed", type=EventType.ORDER_CLOSED, occurred_at=T0,
                     source="retailflow", data=OrderClosed(order_id=self.order_id, channel=self.channel,
                                                           outcome=outcome, shipment_ids=list(self.shipment_ids)))


async def ship_stock(engine: AsyncEngine, order: Order, shipment_id: str, location_id: str,
                     *lines: tuple[int, int]) -> None:
    """What ReserveToFulfill does before it hands a shipment over: receive, reserve, pick and SHIP (COGS)."""
    erp = PostgresErp(engine)
    w = order.world
    for kind in (MovementKind.RECEIPT, MovementKind.RESERVE, MovementKind.PICK, MovementKind.SHIP):
        await erp.post_movement(movement(
            f"{order.order_workflow_id}:{kind}:{shipment_id}", kind,
            *[line(w.skus[n], location_id, q) for n, q in lines], workflow_id=order.order_workflow_id))


async def journal(engine: AsyncEngine, order: Order) -> dict[tuple[str, str], Decimal]:
    """Net balance (debit - credit) per (legal entity, account) of everything the order posted."""
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT e.legal_entity, l.account, sum(l.debit) - sum(l.credit) AS net FROM journal_lines l "
            "JOIN journal_entries e ON e.key = l.entry_key WHERE e.workflow_id = ANY(:wfs) "
            "GROUP BY e.legal_entity, l.account"), {"wfs": [order.workflow_id, order.order_workflow_id]})).all()
    return {(r.legal_entity, r.account): D(r.net) for r in rows if r.net != 0}


async def entry_keys(engine: AsyncEngine, order: Order, source_kind: str) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT key FROM journal_entries WHERE workflow_id = :wf AND source_kind = :kind ORDER BY key"),
            {"wf": order.workflow_id, "kind": source_kind})
        return [r.key for r in rows]


def cogs(world: World, *lines: tuple[int, int]) -> Decimal:
    return sum((world.cost[world.skus[n]] * q for n, q in lines), D(0))


def value(world: World, *lines: tuple[int, int]) -> Decimal:
    return sum((D(world.items[n].price) * q for n, q in lines), D(0))


async def send(client: Client, settings: Settings, *events: Event) -> None:
    for event in events:
        await dispatch(client, event, settings)


def handle(client: Client, order: Order) -> WorkflowHandle[Any, Any]:
    return client.get_workflow_handle(order.workflow_id, result_type=SettleOutcome)


async def finish(client: Client, order: Order) -> tuple[SettleOutcome, SettleState, dict[str, CaseSnapshot]]:
    """The outcome, the final `state`, and each case as ops sees it (its own `state` query)."""
    h = handle(client, order)
    outcome = await h.result()
    state = await h.query(ShipToSettle.state)
    await replayer().replay_workflow(await h.fetch_history())  # deterministic: replays against today's code
    cases = {c["kind"]: await client.get_workflow_handle(c["exception_id"]).query(ExceptionCase.state)
             for c in state.exception_cases}
    await close_cases(client, state)
    return outcome, state, cases


async def close_cases(client: Client, state: SettleState) -> None:
    """End the cases a test left open (after its assertions' snapshot), so their escalation timers never hold
    the shared time-skipping clock for other tests."""
    await support.terminate_open_cases(client, [c["exception_id"] for c in state.exception_cases
                                                if c["status"] == "open"])


async def applied(client: Client, order: Order, done: Callable[[SettleState], bool]) -> SettleState:
    """The `state` once `done` holds (signals are applied asynchronously)."""
    return await support.eventually(lambda: handle(client, order).query(ShipToSettle.state), done,
                                    what=f"{order.workflow_id} applied", within=30)


async def runs_of(client: Client, workflow_id: str, first_run: str) -> list[list[Any]]:
    """The history events of each run of a workflow, first run first, following continue-as-new."""
    runs, run_id = [], first_run
    while run_id:
        events = [e async for e in client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history_events()]
        runs.append(events)
        last = events[-1]
        run_id = (last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
                  if last.event_type == HistoryEvent.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW else "")
    return runs


async def timers_started(client: Client, order: Order) -> list[timedelta]:
    """The durations of the timers the (last) run started, in order."""
    return [e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
            async for e in handle(client, order).fetch_history_events()
            if e.event_type == HistoryEvent.EVENT_TYPE_TIMER_STARTED]


def local_activities(events: list[Any]) -> list[str]:
    """The activity type of each local activity a run recorded (its markers)."""
    names = []
    for e in events:
        marker = e.marker_recorded_event_attributes
        if e.event_type == HistoryEvent.EVENT_TYPE_MARKER_RECORDED and marker.marker_name == "core_local_activity":
            names.append(json.loads(marker.details["data"].payloads[0].data)["activity_type"])
    return names


def case_kinds(state: SettleState, status: str | None = None) -> list[str]:
    return sorted(c["kind"] for c in state.exception_cases if status is None or c["status"] == status)


# --- tests ---------------------------------------------------------------------------------------------------
async def test_one_shipment_settled_exactly(time_skipping_env: WorkflowEnvironment, engine: AsyncEngine,
                                            world: World, database_url: str) -> None:
    client, settings = time_skipping_env.client, make_settings()
    order = Order(world)
    lines = ((0, 2), (1, 1))
    amount = value(world, *lines)
    async with build_worker(client, engine, settings):
        await ship_stock(engine, order, "s1", world.dc, *lines)
        first = await dispatch(client, order.shipped("s1", world.dc, *lines), settings)
        assert first.workflow_id == order.workflow_id
        await send(client, settings, order.delivered("s1"), order.settled(str(amount)), order.closed())
        outcome, state, cases = await finish(client, order)

    assert outcome.stage is SettleStage.SETTLED and state.stage is SettleStage.SETTLED
    assert (outcome.totals.shipped, outcome.totals.captured, outcome.totals.settled) == (amount, amount, amount)
    assert outcome.totals.outstanding == 0 and outcome.cases == []
    [shipment] = state.shipments
    assert shipment.delivered_at is not None and shipment.settlement == "settled"
    assert shipment.revenue_key == f"{order.workflow_id}:sale:s1"
    assert shipment.capture_key == f"{order.workflow_id}:capture:s1"
    assert await entry_keys(engine, order, "sale") == [f"{order.workflow_id}:sale:s1"]
    assert await entry_keys(engine, order, "settlement") == [f"{order.workflow_id}:settlement:s1"]
    a = world.entity_a
    assert await journal(engine, order) == {
        (a, "revenue"): -amount, (a, "cash_clearing"): amount,  # receivable cleared into cash clearing
        (a, "cogs"): cogs(world, *lines), (a, "goods_received_not_invoiced"): -cogs(world, *lines),
    }
    sa = (await handle(client, order).describe()).typed_search_attributes
    assert sa.get(STAGE) == "settled" and sa.get(BUSINESS_KEY) == f"web/{order.order_id}"
    assert sa.get(LOCATION_IDS) == [world.dc] and sa.get(SKUS) == sorted(world.skus)
    await assert_checker_ok(database_url)


@pytest.mark.parametrize("per_shipment", [False, True], ids=["settled_once", "settled_per_shipment"])
async def test_split_shipment(per_shipment: bool, time_skipping_env: WorkflowEnvironment, engine: AsyncEngine,
                              world: World, database_url: str) -> None:
    """Two shipments from two legal entities, settled once for both or once per shipment: each entity's
    receivable is cleared by its own shipment's money. The order closed partially fulfilled: the line cancelled
    after the first dispatch never shipped, so it is not expected."""
    client, settings = time_skipping_env.client, make_settings()
    order = Order(world)
    one, two = ((0, 3),), ((1, 2),)
    v1, v2 = value(world, *one), value(world, *two)
    async with build_worker(client, engine, settings):
        await ship_stock(engine, order, "s1", world.dc, *one)
        await send(client, settings, order.shipped("s1", world.dc, *one))
        if per_shipment:
            await send(client, settings, order.settled(str(v1), at=T0 + timedelta(days=1)))
        await ship_stock(engine, order, "s2", world.far, *two)
        await send(client, settings, order.shipped("s2", world.far, *two))
        if per_shipment:
            await send(client, settings, order.settled(str(v2), at=T0 + timedelta(days=2)))
        else:
            await send(client, settings, order.settled(str(v1 + v2)))
        await send(client, settings, order.closed("partially_fulfilled"))
        outcome, state, cases = await finish(client, order)

    assert outcome.stage is SettleStage.SETTLED and outcome.settlements == (2 if per_shipment else 1)
    assert outcome.totals.settled == outcome.totals.captured == v1 + v2 and outcome.cases == []
    assert state.closed_outcome == "partially_fulfilled"
    by_shipment = {s.shipment_id: s.settled_by for s in state.shipments}
    if per_shipment:
        assert by_shipment["s1"] != by_shipment["s2"]
    else:
        assert by_shipment["s1"] == by_shipment["s2"]
    a, b = world.entity_a, world.entity_b
    assert await journal(engine, order) == {
        (a, "revenue"): -v1, (a, "cash_clearing"): v1, (b, "revenue"): -v2, (b, "cash_clearing"): v2,
        (a, "cogs"): cogs(world, *one), (a, "goods_received_not_invoiced"): -cogs(world, *one),
        (b, "cogs"): cogs(world, *two), (b, "goods_received_not_invoiced"): -cogs(world, *two),
    }
    assert await entry_keys(engine, order, "settlement") == [
        f"{order.workflow_id}:settlement:s1", f"{order.workflow_id}:settlement:s2"]
    await assert_checker_ok(database_url)


@pytest.mark.parametrize(("settled", "tolerance", "stage"), [
    ("-1.00", "0.00", SettleStage.MISMATCH),  # under-settlement
    ("+1.50", "0.00", SettleStage.MISMATCH),  # over-settlement
    ("-0.03", "0.05", SettleStage.SETTLED),  # within the tolerance: no case
], ids=["under", "over", "within_tolerance"])
async def test_under_and_over_settlement(settled: str, tolerance: str, stage: SettleStage,
                                         time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, world: World,
                                         database_url: str) -> None:
    client, settings = time_skipping_env.client, make_settings(settlement_tolerance=D(tolerance))
    order = Order(world)
    lines = ((0, 4),)
    expected = value(world, *lines)
    paid = expected + D(settled)
    async with build_worker(client, engine, settings):
        await ship_stock(engine, order, "s1", world.dc, *lines)
        await send(client, settings, order.shipped("s1", world.dc, *lines), order.closed(),
                   order.settled(str(paid)))
        outcome, state, cases = await finish(client, order)

    assert outcome.stage is stage and state.stage is stage
    if stage is SettleStage.MISMATCH:
        assert state.mismatch is not None
        assert (state.mismatch.expected, state.mismatch.settled) == (expected, paid)
        assert state.mismatch.difference == D(settled)
        assert outcome.cases == ["settlement_mismatch"]
        assert case_kinds(state, "open") == ["settlement_mismatch"]
        case = cases["settlement_mismatch"]  # ops sees both figures on the case itself
        assert (D(case.details["expected"]), D(case.details["settled"])) == (expected, paid)
        assert case.details["shipment_ids"] == "s1" and case.business_key == f"web/{order.order_id}"
        assert case.skus == [world.skus[0]] and case.location_ids == [world.dc]
    else:
        assert state.mismatch is None and outcome.cases == [] and case_kinds(state) == []
    a = world.entity_a
    got = await journal(engine, order)
    # the settled money is posted as received; a mismatch's difference stays on the receivable for ops, a
    # difference within the tolerance goes to settlement_differences and clears the receivable (release 2)
    assert got[(a, "revenue")] == -expected and got[(a, "cash_clearing")] == paid
    if stage is SettleStage.MISMATCH:
        assert got.get((a, "receivable"), D(0)) == expected - paid
    else:
        assert (a, "receivable") not in got and got[(a, "settlement_differences")] == expected - paid
    assert got[(a, "cogs")] == cogs(world, *lines)
    await assert_checker_ok(database_url)


async def test_late_settlement_opens_then_resolves_settlement_overdue(
        own_time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, world: World, database_url: str) -> None:
    client, settings = own_time_skipping_env.client, make_settings()
    order = Order(world)
    lines = ((1, 1),)
    amount = value(world, *lines)
    async with build_worker(client, engine, settings):
        await ship_stock(engine, order, "s1", world.dc, *lines)
        await send(client, settings, order.shipped("s1", world.dc, *lines), order.closed())
        h = handle(client, order)
        await own_time_skipping_env.sleep(timedelta(days=3, hours=1))  # past the 3-day default
        state = await h.query(ShipToSettle.state)
        assert state.stage is SettleStage.AWAITING_SETTLEMENT
        assert case_kinds(state, "open") == ["settlement_overdue"]
        sa = (await h.describe()).typed_search_attributes
        assert sa.get(SLA_BREACHED) is True and sa.get(OPEN_EXCEPTIONS) == 1
        await send(client, settings, order.settled(str(amount)))
        outcome, state, cases = await finish(client, order)

    assert outcome.stage is SettleStage.SETTLED
    assert case_kinds(state, "resolved") == ["settlement_overdue"] and case_kinds(state, "open") == []
    a = world.entity_a
    assert await journal(engine, order) == {
        (a, "revenue"): -amount, (a, "cash_clearing"): amount,
        (a, "cogs"): cogs(world, *lines), (a, "goods_received_not_invoiced"): -cogs(world, *lines),
    }
    await assert_checker_ok(database_url)


async def test_settlement_before_dispatch_is_held_until_the_shipment(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, world: World, database_url: str) -> None:
    client, settings = time_skipping_env.client, make_settings()
    order = Order(world)
    lines = ((0, 1), (1, 1))
    amount = value(world, *lines)
    async with build_worker(client, engine, settings):
        early = await dispatch(client, order.settled(str(amount)), settings)
        assert early.workflow_id == order.workflow_id  # the early event started the process
        await send(client, settings, order.delivered("s1"))  # the carrier is early too
        h = handle(client, order)
        state = await h.query(ShipToSettle.state)
        assert state.stage is SettleStage.AWAITING_SHIPMENT and state.settlements == [] and state.shipments == []
        assert await journal(engine, order) == {}
        await ship_stock(engine, order, "s1", world.dc, *lines)
        await send(client, settings, order.shipped("s1", world.dc, *lines))
        await send(client, settings, order.closed())
        outcome, state, cases = await finish(client, order)
        timers = await timers_started(client, order)

    assert outcome.stage is SettleStage.SETTLED and outcome.totals.settled == amount
    assert state.shipments[0].delivered_at is not None
    assert timers[0] == timedelta(days=7)  # opened by an early event: the open timeout runs until the shipment
    a = world.entity_a
    assert await journal(engine, order) == {
        (a, "revenue"): -amount, (a, "cash_clearing"): amount,
        (a, "cogs"): cogs(world, *lines), (a, "goods_received_not_invoiced"): -cogs(world, *lines),
    }
    await assert_checker_ok(database_url)


async def test_early_settlement_without_shipment_ends_cleanly(
        own_time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, world: World, database_url: str) -> None:
    client, settings = own_time_skipping_env.client, make_settings()
    order = Order(world)
    async with build_worker(client, engine, settings):
        await send(client, settings, order.settled("10.00"))
        state = await handle(client, order).query(ShipToSettle.state)
        assert state.stage is SettleStage.AWAITING_SHIPMENT
        await own_time_skipping_env.sleep(timedelta(days=7, hours=1))  # past the default open timeout
        outcome, state, cases = await finish(client, order)
    assert outcome.stage is SettleStage.NOT_OPENED and state.stage is SettleStage.NOT_OPENED
    assert outcome.shipments == 0 and outcome.totals.settled == 0
    assert len(outcome.unapplied) == 1 and outcome.unapplied[0].startswith("payment.settled:")
    assert await journal(engine, order) == {}
    await assert_checker_ok(database_url)


async def test_redelivery_posts_once_and_a_resent_settlement_is_a_second_one(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, world: World, database_url: str) -> None:
    """The same webhook-id delivered twice is one settlement (the Inbox drops the redelivery). The same amount
    under a new webhook-id is real money (release 2: no amount fingerprint): a second settlement, which with
    nothing left to pay for ends as an over-settlement mismatch."""
    client, settings = time_skipping_env.client, make_settings()
    order = Order(world)
    lines = ((0, 2),)
    amount = value(world, *lines)
    settled = order.settled(str(amount), event_id="wh-settle-1")
    async with build_worker(client, engine, settings):
        await ship_stock(engine, order, "s1", world.dc, *lines)
        await send(client, settings, order.shipped("s1", world.dc, *lines), settled, settled,
                   order.settled(str(amount), event_id="wh-settle-1-resent"),
                   order.shipped("s1", world.dc, *lines), order.closed())
        outcome, state, cases = await finish(client, order)

    assert outcome.stage is SettleStage.MISMATCH and outcome.cases == ["settlement_mismatch"]
    assert outcome.settlements == 2 and outcome.duplicates == 2  # 2 redeliveries by event_id
    first, resent = state.settlements
    assert first.event_id == "wh-settle-1" and first.allocated_to == ["s1"] and not first.mismatch
    assert resent.duplicate_of is None and resent.mismatch
    assert state.mismatch is not None and (state.mismatch.expected, state.mismatch.settled) == (D(0), amount)
    assert await entry_keys(engine, order, "settlement") == [
        f"{order.workflow_id}:settlement:s1", f"{order.workflow_id}:settlement:unmatched:wh-settle-1-resent"]
    assert await entry_keys(engine, order, "sale") == [f"{order.workflow_id}:sale:s1"]
    a = world.entity_a
    assert await journal(engine, order) == {
        (a, "revenue"): -amount, (a, "cash_clearing"): 2 * amount, (a, "receivable"): -amount,  # owed back: ops
        (a, "cogs"): cogs(world, *lines), (a, "goods_received_not_invoiced"): -cogs(world, *lines),
    }
    await assert_checker_ok(database_url)


async def test_two_equal_settlements_are_two_settlements(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, world: World, database_url: str) -> None:
    """Two shipments of the same value, settled one by one with the same amount at the same time: both count
    (release 2), each clears its own shipment's receivable."""
    client, settings = time_skipping_env.client, make_settings()
    order = Order(world)
    lines = ((0, 1),)
    amount = value(world, *lines)
    async with build_worker(client, engine, settings):
        await ship_stock(engine, order, "s1", world.dc, *lines)
        await ship_stock(engine, order, "s2", world.dc, *lines)
        await send(client, settings, order.shipped("s1", world.dc, *lines), order.settled(str(amount)),
                   order.shipped("s2", world.dc, *lines), order.settled(str(amount)), order.closed())
        outcome, state, cases = await finish(client, order)

    assert outcome.stage is SettleStage.SETTLED and outcome.cases == []
    assert outcome.settlements == 2 and outcome.duplicates == 0
    assert outcome.totals.settled == outcome.totals.captured == 2 * amount
    assert sorted(s.allocated_to[0] for s in state.settlements) == ["s1", "s2"]
    a = world.entity_a
    assert await journal(engine, order) == {
        (a, "revenue"): -2 * amount, (a, "cash_clearing"): 2 * amount,
        (a, "cogs"): cogs(world, *lines, *lines), (a, "goods_received_not_invoiced"): -cogs(world, *lines, *lines),
    }
    await assert_checker_ok(database_url)


@pytest.mark.parametrize("foreign", ["payment_id", "currency"])
async def test_settlement_of_another_payment_or_currency_never_matches(
        foreign: str, time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, world: World,
        database_url: str) -> None:
    """A settlement of the right amount for another payment_id (or in another currency) is refused with the
    reason on a settlement_mismatch case, posted nowhere; the order's own settlement then settles it."""
    client, settings = time_skipping_env.client, make_settings()
    order = Order(world)
    lines = ((1, 2),)
    amount = value(world, *lines)
    other = order.settled(str(amount), **({"payment_id": "pay-someone-else"} if foreign == "payment_id"
                                          else {"currency": "EUR"}))
    async with build_worker(client, engine, settings):
        await ship_stock(engine, order, "s1", world.dc, *lines)
        await send(client, settings, order.shipped("s1", world.dc, *lines), other)
        state = await applied(client, order, lambda s: bool(s.settlements))
        assert state.stage is SettleStage.AWAITING_SETTLEMENT and state.settlements[0].refused
        await send(client, settings, order.settled(str(amount)), order.closed())
        outcome, state, cases = await finish(client, order)

    assert outcome.stage is SettleStage.MISMATCH and outcome.cases == ["settlement_mismatch"]
    refused, real = state.settlements
    assert refused.refused and ("pay-someone-else" in refused.refused if foreign == "payment_id"
                                else "EUR" in refused.refused)
    assert refused.posting_keys == [] and refused.allocated_to == [] and real.allocated_to == ["s1"]
    assert state.shipments[0].settlement == "settled" and outcome.totals.settled == amount
    case = cases["settlement_mismatch"]
    assert case.details["reason"] == refused.refused and D(case.details["settled"]) == amount
    a = world.entity_a
    assert await journal(engine, order) == {  # only the order's own money, the receivable cleared
        (a, "revenue"): -amount, (a, "cash_clearing"): amount,
        (a, "cogs"): cogs(world, *lines), (a, "goods_received_not_invoiced"): -cogs(world, *lines),
    }
    await assert_checker_ok(database_url)


async def test_fee_and_tolerance_go_to_their_accounts_and_nothing_stays_receivable(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, world: World, database_url: str) -> None:
    """Two shipments in two legal entities, settled once for both 0.03 short (tolerance 0.05) with a processor
    fee of 1.17 out of the gross: in each entity the receivable is cleared exactly, the fee sits in
    processor_fees, the shortfall in settlement_differences, cash clearing holds what arrived."""
    client, settings = time_skipping_env.client, make_settings(settlement_tolerance=D("0.05"))
    order = Order(world)
    one, two = ((0, 3),), ((1, 2),)
    v1, v2 = value(world, *one), value(world, *two)
    gross, fee = v1 + v2 - D("0.03"), D("1.17")
    async with build_worker(client, engine, settings):
        await ship_stock(engine, order, "s1", world.dc, *one)
        await ship_stock(engine, order, "s2", world.far, *two)
        await send(client, settings, order.shipped("s1", world.dc, *one), order.shipped("s2", world.far, *two),
                   order.settled(str(gross), fee=str(fee)), order.closed())
        outcome, state, cases = await finish(client, order)

    assert outcome.stage is SettleStage.SETTLED and outcome.cases == []
    assert state.settlements[0].fee == fee and outcome.totals.settled == gross
    got = await journal(engine, order)
    a, b = world.entity_a, world.entity_b
    assert (a, "receivable") not in got and (b, "receivable") not in got  # no residual receivable anywhere
    assert got[(a, "revenue")] == -v1 and got[(b, "revenue")] == -v2
    assert got[(a, "processor_fees")] + got[(b, "processor_fees")] == fee
    assert got[(a, "settlement_differences")] + got[(b, "settlement_differences")] == D("0.03")
    assert got[(a, "cash_clearing")] + got[(b, "cash_clearing")] == gross - fee
    for entity, captured in ((a, v1), (b, v2)):  # each entity's entry clears its own receivable
        assert got[(entity, "cash_clearing")] + got[(entity, "processor_fees")] \
            + got[(entity, "settlement_differences")] == captured
    await assert_checker_ok(database_url)


async def test_over_capture_opens_a_case_and_the_rest_settles(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, world: World, database_url: str) -> None:
    client, settings = time_skipping_env.client, make_settings()
    one, two = ((0, 1),), ((1, 3),)
    v1, v2 = value(world, *one), value(world, *two)
    order = Order(world, authorized=str(v1 + v2 - D("1.00")))  # authorized less than both shipments
    async with build_worker(client, engine, settings):
        await ship_stock(engine, order, "s1", world.dc, *one)
        await ship_stock(engine, order, "s2", world.dc, *two)
        await send(client, settings, order.shipped("s1", world.dc, *one), order.shipped("s2", world.dc, *two),
                   order.settled(str(v1)), order.closed())
        outcome, state, cases = await finish(client, order)

    assert outcome.stage is SettleStage.CAPTURE_REFUSED and outcome.cases == ["over_capture"]
    assert case_kinds(state, "open") == ["over_capture"]
    s1, s2 = state.shipments
    assert s1.captured == v1 and s1.settlement == "settled"
    assert s2.captured == 0 and s2.settlement == "not_captured" and s2.capture_refused
    assert "exceed the authorization" in s2.capture_refused
    case = cases["over_capture"]
    assert case.details["shipment_id"] == "s2" and D(case.details["requested"]) == v2
    assert D(case.details["authorized"]) == v1 + v2 - D("1.00") and D(case.details["captured_before"]) == v1
    assert (outcome.totals.shipped, outcome.totals.captured, outcome.totals.settled) == (v1 + v2, v1, v1)
    a = world.entity_a
    # revenue for both shipments; the refused capture leaves its value on the receivable for ops
    assert await journal(engine, order) == {
        (a, "revenue"): -(v1 + v2), (a, "receivable"): v2, (a, "cash_clearing"): v1,
        (a, "cogs"): cogs(world, *one, *two), (a, "goods_received_not_invoiced"): -cogs(world, *one, *two),
    }
    await assert_checker_ok(database_url)


async def test_end_to_end_from_order_placed_with_a_line_never_shipped(
        dev_env: WorkflowEnvironment, engine: AsyncEngine, world: World, database_url: str) -> None:
    """The real hand-over: ReserveToFulfill reserves both lines, the pick finds only line 1 (short pick: line 2 is
    released and cancelled), ships it (SHIP movement: COGS) and hands the shipment over as order.shipped, then
    order.closed. Settled for what shipped: the cancelled line is not expected, and the journal shows the
    receivable cleared into cash clearing."""
    client, settings = dev_env.client, make_settings()
    erp = PostgresErp(engine)
    for n in (0, 1):
        await erp.post_movement(movement(world.key(f"open:{n}"), MovementKind.RECEIPT, line(world.skus[n], world.dc, 10)))
    order = Order(world)
    price0, price1 = D(world.items[0].price), D(world.items[1].price)
    authorized = 2 * price0 + 3 * price1
    shipped_value = 2 * price0

    def ev(type: EventType, data: dict[str, Any], source: str) -> Event:
        return Event.parse(unique("wh"), type, T0, source, data)

    base = {"order_id": order.order_id, "channel": "web"}
    async with build_worker(client, engine, settings):
        decision = await dispatch(client, ev(EventType.ORDER_PLACED, {
            **base, "currency": "USD", "fulfillment": {"mode": "ship", "location_id": world.dc},
            "payment": {"payment_id": order.payment.payment_id, "authorized_amount": str(authorized)},
            "lines": [{"line_id": "1", "sku": world.skus[0], "quantity": 2, "unit_price": str(price0)},
                      {"line_id": "2", "sku": world.skus[1], "quantity": 3, "unit_price": str(price1)}],
        }, "web"), settings)
        assert decision.decision is not None and decision.decision.decision == "reserved"
        await send(client, settings,
                   ev(EventType.FULFILLMENT_PICKED, {**base, "location_id": world.dc,
                                                     "lines": [{"line_id": "1", "quantity": 2}]}, "wms"),
                   ev(EventType.SHIPMENT_DISPATCHED, {**base, "shipment_id": "S1", "location_id": world.dc,
                                                      "carrier": "UPS", "tracking_number": "1Z1",
                                                      "lines": [{"line_id": "1", "quantity": 2}]}, "wms"),
                   ev(EventType.PAYMENT_SETTLED, {**base, "payment_id": order.payment.payment_id,
                                                  "amount": str(shipped_value), "currency": "USD"}, "payments"))
        outcome, state, _ = await finish(client, order)

    assert outcome.stage is SettleStage.SETTLED and state.closed_outcome == "partially_fulfilled"
    assert state.authorized_amount == authorized
    assert (outcome.totals.shipped, outcome.totals.captured, outcome.totals.settled) == (shipped_value,) * 3
    a = world.entity_a
    got = await journal(engine, order)
    assert got[(a, "revenue")] == -shipped_value and got[(a, "cash_clearing")] == shipped_value
    assert (a, "receivable") not in got  # cleared
    assert got[(a, "cogs")] == 2 * world.cost[world.skus[0]]
    await assert_checker_ok(database_url)


async def test_the_standard_lifecycle_costs_at_most_eight_actions(
        dev_env: WorkflowEnvironment, engine: AsyncEngine, world: World, database_url: str) -> None:
    """Issue 19's budget for ShipToSettle's part of a one-shipment order: release 3's one hand-over (the
    shipment that ends the order carries the close, by signal-with-start), then the carrier's shipment.delivered
    and the processor's matching payment.settled, each applied before the next comes; default SLA policy, no
    breach. Counted from the run's own history by Temporal Cloud's rules (bench.cost): start 1, the two signals,
    revenue and capture (local activities of one task) 1, the SLA timer 1, one upsert, and the settlement
    posting with the close (local activities of the last task) 1. No open timeout: the shipment opened it."""
    client, settings = dev_env.client, make_settings()
    order = Order(world)
    lines = ((0, 2), (1, 1))
    amount = value(world, *lines)
    async with build_worker(client, engine, settings):
        await ship_stock(engine, order, "s1", world.dc, *lines)
        started = await dispatch(client, order.shipped("s1", world.dc, *lines, closing=True), settings)
        assert started.status == "started"
        await applied(client, order, lambda s: bool(s.shipments) and s.shipments[0].capture_key is not None)
        await send(client, settings, order.delivered("s1"))
        await applied(client, order, lambda s: s.shipments[0].delivered_at is not None)
        await send(client, settings, order.settled(str(amount)))
        outcome, state, _ = await finish(client, order)
        counted = cost.count(await handle(client, order).fetch_history())
        timers = await timers_started(client, order)

    assert outcome.stage is SettleStage.SETTLED and state.closed_outcome == "fulfilled"
    assert outcome.totals.settled == amount and outcome.cases == []
    assert counted.total <= 8, dict(counted.actions)
    assert timers == [timedelta(days=3)], "the SLA clock's one timer, no open timeout"
    sa = (await handle(client, order).describe()).typed_search_attributes
    assert sa.get(STAGE) == "settled" and sa.get(SKUS) == sorted(world.skus[:2]) and sa.get(LOCATION_IDS) == [world.dc]
    a = world.entity_a
    assert await journal(engine, order) == {
        (a, "revenue"): -amount, (a, "cash_clearing"): amount,
        (a, "cogs"): cogs(world, *lines), (a, "goods_received_not_invoiced"): -cogs(world, *lines),
    }
    await assert_checker_ok(database_url)


async def test_continues_as_new_keeping_its_state_its_clock_and_what_it_has_seen(
        dev_env: WorkflowEnvironment, engine: AsyncEngine, world: World, database_url: str) -> None:
    """With a tiny `continue_as_new_after` the process continues as new after every event it applies: the
    settlement_overdue clock started in the first run breaches in a later one and resolves when the money comes,
    a redelivery that comes to a later run is still dropped, a delivery held for a shipment not yet here is
    applied when the shipment comes, and every revenue, capture and settlement is done once over all runs."""
    client, settings = dev_env.client, make_settings(sla={SlaKind.SETTLEMENT_OVERDUE: timedelta(seconds=8)})
    order = Order(world)
    one, two = ((0, 3),), ((1, 2),)
    v1, v2 = value(world, *one), value(world, *two)
    first = order.settled(str(v1), event_id="wh-settle-1")
    policy = settings.process_policy("settle", order.channel).model_copy(update={"continue_as_new_after": 1})
    async with build_worker(client, engine, settings):
        await ship_stock(engine, order, "s1", world.dc, *one)
        await ship_stock(engine, order, "s2", world.far, *two)
        h = await client.start_workflow(
            ShipToSettle.run, ProcessInput(business_key=f"{order.channel}/{order.order_id}", channel=order.channel,
                                           policy=policy),
            id=order.workflow_id, task_queue=settings.task_queue,
            start_signal="event", start_signal_args=[order.shipped("s1", world.dc, *one)])
        first_run = h.result_run_id
        assert first_run is not None
        await applied(client, order, lambda s: bool(s.shipments) and s.shipments[0].capture_key is not None)
        await send(client, settings, order.delivered("s1"))
        await applied(client, order, lambda s: s.shipments[0].delivered_at is not None)
        await send(client, settings, order.delivered("s2"))  # before its shipment: held in the state
        await applied(client, order, lambda s: case_kinds(s, "open") == ["settlement_overdue"])  # s1's money is late
        await send(client, settings, first)
        await applied(client, order, lambda s: s.shipments[0].settlement == "settled")
        await send(client, settings, order.shipped("s2", world.far, *two, closing=True))
        state = await applied(client, order, lambda s: len(s.shipments) == 2 and s.shipments[1].capture_key is not None)
        assert state.shipments[1].delivered_at is not None  # the held delivery came across
        await send(client, settings, first)  # a redelivery, to a later run (s2 was applied after a checkpoint)
        await send(client, settings, order.settled(str(v2)))
        outcome, state, _ = await finish(client, order)
        runs = await runs_of(client, order.workflow_id, first_run)

    assert len(runs) >= 4, f"only {len(runs)} runs"
    breached_in = [n for n, events in enumerate(runs)
                   if any(e.event_type == HistoryEvent.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED
                          for e in events)]
    assert breached_in and breached_in[0] > 0, "the clock of the first run breached in a later one"
    got_first = [n for n, events in enumerate(runs) for e in events
                 if e.event_type == HistoryEvent.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
                 and b"wh-settle-1" in e.workflow_execution_signaled_event_attributes.input.payloads[0].data]
    assert len(set(got_first)) == 2, f"the settlement and its redelivery reached runs {got_first}"
    assert outcome.stage is SettleStage.SETTLED and outcome.shipments == 2
    assert outcome.settlements == 2 and outcome.duplicates == 1  # the redelivery, dropped by a later run
    assert case_kinds(state, "resolved") == ["settlement_overdue"] and case_kinds(state) == ["settlement_overdue"]
    assert [s.settled_by for s in state.shipments] == [["wh-settle-1"], [state.settlements[1].event_id]]
    done = sorted(name for events in runs for name in local_activities(events))
    assert done == ["capture_payment"] * 2 + ["close_process"] + ["post_financial"] * 4  # 2 sales, 2 settlements
    assert await entry_keys(engine, order, "sale") == [f"{order.workflow_id}:sale:s1", f"{order.workflow_id}:sale:s2"]
    assert await entry_keys(engine, order, "settlement") == [
        f"{order.workflow_id}:settlement:s1", f"{order.workflow_id}:settlement:s2"]
    a, b = world.entity_a, world.entity_b
    assert await journal(engine, order) == {
        (a, "revenue"): -v1, (a, "cash_clearing"): v1, (b, "revenue"): -v2, (b, "cash_clearing"): v2,
        (a, "cogs"): cogs(world, *one), (a, "goods_received_not_invoiced"): -cogs(world, *one),
        (b, "cogs"): cogs(world, *two), (b, "goods_received_not_invoiced"): -cogs(world, *two),
    }
    await assert_checker_ok(database_url)

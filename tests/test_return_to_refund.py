"""ReturnToRefund on the time-skipping server, driven by events through `client.dispatch.dispatch` (signal-with-
start) as the webhooks drive it. ReserveToFulfill is not run: each test ships the original order itself the way
it would (RECEIPT of opening stock, RESERVE, PICK, SHIP through the ledger, and the shipment record in the WMS,
which the return reads back with `get_shipped_lines`).

Every test asserts the buckets, the return's journal (per legal entity and account) and that the invariant checker
passes.
"""
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.enums.v1 import EventType as HistoryEvent
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from adapters.pos import CaptureInput
from adapters.stub_erp import PostgresErp
from adapters.stub_pos import PostgresPos
from adapters.stub_wms import PostgresWms
from adapters.wms import ShipmentRecord, ShippedLine
from bench.cost import count
from client.dispatch import dispatch
from client.names import BUSINESS_KEY, LOCATION_IDS, OPEN_EXCEPTIONS, SKUS, SLA_BREACHED, STAGE
from config.settings import Settings
from domain import ids
from domain.cases import CaseSnapshot
from domain.events import (
    Disposition,
    Event,
    EventType,
    InspectedLine,
    RefundSettled,
    ReturnAuthorized,
    ReturnInspected,
    ReturnLine,
    ReturnReceived,
    SkuQuantity,
)
from domain.inventory import MovementKind
from domain.process import ProcessInput
from domain.returns import ReturnOutcome, ReturnStage, ReturnState
from tests import support
from tests.ledger_helpers import World, buckets, line, movement
from tests.support import assert_checker_ok, unique
from tests.support import test_settings as make_settings
from worker.factory import build_worker
from workflows.return_to_refund import ReturnToRefund

D = Decimal
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
RESTOCK, DAMAGED, VENDOR = Disposition.RESTOCK, Disposition.DAMAGED, Disposition.VENDOR_RETURN


@pytest_asyncio.fixture(loop_scope="session")
async def world(engine: AsyncEngine) -> World:
    return await World().create(PostgresErp(engine))


async def late_event_done(client: Client, case_id: str | None) -> None:
    """Wait for the LateEvent process behind `case_id` to finish, then end its case (test cleanup)."""
    assert case_id is not None
    late_id = case_id.removeprefix("exception:").rsplit(":", 1)[0]
    await client.get_workflow_handle(late_id).result()
    await client.get_workflow_handle(case_id).terminate("test cleanup")


class Sale:
    """The original online order, shipped the way ReserveToFulfill ships it. `lines`: line_id -> (sku index, EA)."""

    def __init__(self, world: World, lines: dict[str, tuple[int, int]], channel: str = "web") -> None:
        self.world, self.lines, self.channel = world, lines, channel
        self.order_id = unique("o")
        self.workflow_id = ids.order_workflow_id(channel, self.order_id)

    def price(self, line_id: str) -> Decimal:
        return D(self.world.items[self.lines[line_id][0]].price)

    async def ship(self, engine: AsyncEngine, location_id: str, *, payment_id: str | None = None,
                   capture: Decimal | None = None, charged: dict[str, Decimal] | None = None,
                   unit_prices: dict[str, Decimal] | None = None) -> None:
        """Ship every line from `location_id`. With `payment_id` the shipment record names the payment (release
        2) and `charged` (line_id -> amount) each line's charged amount; `capture` captures that much on the
        payment, referencing the shipment, as ShipToSettle does."""
        erp, w = PostgresErp(engine), self.world
        per_sku: dict[str, int] = {}
        for n, q in self.lines.values():
            per_sku[w.skus[n]] = per_sku.get(w.skus[n], 0) + q
        for kind in (MovementKind.RECEIPT, MovementKind.RESERVE, MovementKind.PICK, MovementKind.SHIP):
            await erp.post_movement(movement(
                f"{self.workflow_id}:{kind}", kind, *[line(sku, location_id, q) for sku, q in sorted(per_sku.items())],
                workflow_id=self.workflow_id, reference=self.order_id))
        shipment_id = unique("s")
        prices, charged = unit_prices or {}, charged or {}
        await PostgresWms(engine).record_shipment(ShipmentRecord(
            key=f"{self.workflow_id}:shipment:{shipment_id}", shipment_id=shipment_id, channel=self.channel,
            order_id=self.order_id, location_id=location_id, carrier="ups", tracking_number="1Z",
            payment_id=payment_id,
            lines=[ShippedLine(line_id=lid, sku=w.skus[n], quantity=q, unit_price=prices.get(lid, self.price(lid)),
                               currency="USD", amount=charged.get(lid))
                   for lid, (n, q) in self.lines.items()],
        ))
        if capture is not None:
            assert payment_id is not None
            await PostgresPos(engine).capture(CaptureInput(
                key=f"{self.workflow_id}:capture:{shipment_id}", payment_id=payment_id, authorized_amount=capture,
                amount=capture, currency="USD", reference=shipment_id))


class Return:
    """One return's events, as the webhooks deliver them."""

    def __init__(self, sale: Sale) -> None:
        self.sale, self.world = sale, sale.world
        self.return_id = unique("r")
        self.workflow_id = ids.return_workflow_id(self.return_id)

    def _event(self, type: EventType, source: str, data: Any, event_id: str | None) -> Event:
        return Event(event_id=event_id or unique("wh"), type=type, occurred_at=T0, source=source, data=data)

    def authorized(self, location_id: str, *lines: tuple[str, int], event_id: str | None = None) -> Event:
        """`lines`: (line_id, EA); the SKU is the one the sale shipped on that line (or SKU 0 for an unknown line)."""
        return self._event(EventType.RETURN_AUTHORIZED, "web", ReturnAuthorized(
            return_id=self.return_id, order_id=self.sale.order_id, channel=self.sale.channel,
            return_location_id=location_id,
            lines=[ReturnLine(line_id=lid, sku=self.world.skus[self.sale.lines.get(lid, (0, 0))[0]], quantity=q,
                              reason="changed mind") for lid, q in lines]), event_id)

    def received(self, location_id: str, *lines: tuple[int, int], event_id: str | None = None) -> Event:
        return self._event(EventType.RETURN_RECEIVED, "wms", ReturnReceived(
            return_id=self.return_id, location_id=location_id,
            lines=[SkuQuantity(sku=self.world.skus[n], quantity=q) for n, q in lines]), event_id)

    def inspected(self, *lines: tuple[int, int, Disposition], event_id: str | None = None) -> Event:
        return self._event(EventType.RETURN_INSPECTED, "wms", ReturnInspected(
            return_id=self.return_id,
            lines=[InspectedLine(sku=self.world.skus[n], quantity=q, disposition=d) for n, q, d in lines]), event_id)

    def settled(self, amount: Decimal, event_id: str | None = None) -> Event:
        return self._event(EventType.REFUND_SETTLED, "payments", RefundSettled(
            refund_id=unique("rf"), return_id=self.return_id, amount=amount, currency="USD"), event_id)


# --- helpers -------------------------------------------------------------------------------------------------
async def send(client: Client, settings: Settings, *events: Event) -> None:
    for event in events:
        await dispatch(client, event, settings)


def handle(client: Client, ret: Return) -> WorkflowHandle[Any, Any]:
    return client.get_workflow_handle(ret.workflow_id)


async def state_of(client: Client, ret: Return) -> ReturnState:
    return await handle(client, ret).query(ReturnToRefund.state)


async def finish(client: Client, ret: Return) -> tuple[ReturnOutcome, ReturnState]:
    outcome = await client.get_workflow_handle(ret.workflow_id, result_type=ReturnOutcome).result()
    return outcome, await state_of(client, ret)


async def until(probe: Callable[[], Awaitable[bool]], what: str, seconds: float = 30) -> None:
    """Poll `probe` until it holds (the workflow reacts asynchronously to a skipped-over deadline)."""
    await support.eventually(probe, what=what, within=seconds)


async def journal(engine: AsyncEngine, ret: Return) -> dict[tuple[str, str], Decimal]:
    """Net balance (debit - credit) per (legal entity, account) of everything the return posted."""
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT e.legal_entity, l.account, sum(l.debit) - sum(l.credit) AS net FROM journal_lines l "
            "JOIN journal_entries e ON e.key = l.entry_key WHERE e.workflow_id = :wf "
            "GROUP BY e.legal_entity, l.account"), {"wf": ret.workflow_id})).all()
    return {(r.legal_entity, r.account): D(r.net) for r in rows if r.net != 0}


async def entry_kinds(engine: AsyncEngine, ret: Return) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT source_kind FROM journal_entries WHERE workflow_id = :wf ORDER BY 1"),
                                  {"wf": ret.workflow_id})
        return [r.source_kind for r in rows]


async def refunds(engine: AsyncEngine, ret: Return) -> list[Decimal]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT amount FROM refunds WHERE return_id = :r"), {"r": ret.return_id})
        return [D(r.amount) for r in rows]


async def stock(engine: AsyncEngine, world: World, n: int, location_id: str) -> dict[str, int]:
    """The non-zero buckets of SKU `n` at a location."""
    got = await buckets(PostgresErp(engine), world.skus[n], location_id)
    return {str(b): q for b, q in got.items() if q}


def cost(world: World, n: int, q: int = 1) -> Decimal:
    return world.cost[world.skus[n]] * q


def cases(state: ReturnState, status: str | None = None) -> list[str]:
    return sorted(c["kind"] for c in state.exception_cases if status is None or c["status"] == status)


def lines_by_id(state: ReturnState) -> dict[str, dict[str, Any]]:
    return {ln["line_id"]: ln for ln in state.lines}


# --- tests ---------------------------------------------------------------------------------------------------
async def test_full_return(time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, world: World,
                           database_url: str) -> None:
    client, settings = time_skipping_env.client, make_settings()
    sale = Sale(world, {"l1": (0, 2), "l2": (1, 1)})
    ret = Return(sale)
    refund = sale.price("l1") * 2 + sale.price("l2")
    async with build_worker(client, engine, settings):
        await sale.ship(engine, world.dc)
        first = await dispatch(client, ret.authorized(world.dc, ("l1", 2), ("l2", 1)), settings)
        assert first.workflow_id == f"return:{ret.return_id}"  # (the test server answers signal-with-start
        # without the run ID that tells "started" from "signalled")
        await send(client, settings, ret.received(world.dc, (0, 2), (1, 1)),
                   ret.inspected((0, 2, RESTOCK), (1, 1, RESTOCK)))
        await until(lambda: _stage_is(client, ret, ReturnStage.AWAITING_REFUND_SETTLEMENT), "refund issued")
        assert await refunds(engine, ret) == [refund]
        await send(client, settings, ret.settled(refund))
        outcome, state = await finish(client, ret)

    assert (outcome.outcome, outcome.stage) == ("refunded", ReturnStage.REFUNDED)
    assert (outcome.received_units, outcome.accepted_units, outcome.refund_amount) == (3, 3, refund)
    assert state.refund is not None and state.refund.settled_amount == refund and state.refund.refund_reference
    assert [ln["restocked"] for ln in state.lines] == [2, 1] and state.exception_cases == []
    # the returned units are sellable again at the DC, nothing left anywhere else
    assert await stock(engine, world, 0, world.dc) == {"available": 2}
    assert await stock(engine, world, 1, world.dc) == {"available": 1}
    a, value = world.entity_a, cost(world, 0, 2) + cost(world, 1)
    assert await journal(engine, ret) == {
        (a, "inventory"): value, (a, "cogs"): -value,  # received at cost into inspection, then restocked
        (a, "sales_returns"): refund, (a, "cash_clearing"): -refund,  # refunds payable raised and paid
    }
    assert await entry_kinds(engine, ret) == ["disposition", "refund_paid", "return_receipt", "sales_return"]
    sa = (await handle(client, ret).describe()).typed_search_attributes
    assert sa.get(STAGE) == "refunded" and sa.get(BUSINESS_KEY) == ret.return_id
    assert sa.get(SKUS) == sorted(world.skus) and sa.get(LOCATION_IDS) == [world.dc]
    assert sa.get(SLA_BREACHED) is False and sa.get(OPEN_EXCEPTIONS) == 0
    await assert_checker_ok(database_url)


async def _stage_is(client: Client, ret: Return, stage: ReturnStage) -> bool:
    return (await state_of(client, ret)).stage is stage


async def test_partial_return(time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, world: World,
                              database_url: str) -> None:
    """One of three units of line 1 is asked back, two of line 2 are authorized but only one comes back: the
    refund covers the two units received and inspected."""
    client, settings = time_skipping_env.client, make_settings()
    sale = Sale(world, {"l1": (0, 3), "l2": (1, 2)})
    ret = Return(sale)
    refund = sale.price("l1") + sale.price("l2")
    async with build_worker(client, engine, settings):
        await sale.ship(engine, world.dc)
        await send(client, settings, ret.authorized(world.dc, ("l1", 1), ("l2", 2)),
                   ret.received(world.dc, (0, 1), (1, 1)), ret.inspected((0, 1, RESTOCK), (1, 1, RESTOCK)),
                   ret.settled(refund))
        await until(lambda: _stage_is(client, ret, ReturnStage.AWAITING_INSPECTION), "received and inspected")
        assert await refunds(engine, ret) == []  # a second parcel may still come within the receipt grace
        await time_skipping_env.sleep(timedelta(hours=25))
        outcome, state = await finish(client, ret)

    assert outcome.stage is ReturnStage.REFUNDED and outcome.refund_amount == refund
    by_id = lines_by_id(state)
    assert (by_id["l1"]["authorized"], by_id["l1"]["received"], by_id["l1"]["shipped"]) == (1, 1, 3)
    assert (by_id["l2"]["authorized"], by_id["l2"]["received"], by_id["l2"]["accepted"]) == (2, 1, 1)
    assert any("1 authorized units never came back" in n for n in state.notes)
    assert await refunds(engine, ret) == [refund]
    assert await stock(engine, world, 0, world.dc) == {"available": 1}
    assert await stock(engine, world, 1, world.dc) == {"available": 1}
    a, value = world.entity_a, cost(world, 0) + cost(world, 1)
    assert await journal(engine, ret) == {(a, "inventory"): value, (a, "cogs"): -value,
                                          (a, "sales_returns"): refund, (a, "cash_clearing"): -refund}
    await assert_checker_ok(database_url)


async def test_mixed_dispositions_in_one_return(time_skipping_env: WorkflowEnvironment, engine: AsyncEngine,
                                                world: World, database_url: str) -> None:
    """Four units of one SKU: one restocked, one damaged (written off), one to the vendor, one left for a second
    inspection pass: the return stays open (the unit in pending_inspection, out of stock) until it is inspected."""
    client, settings = time_skipping_env.client, make_settings()
    sale = Sale(world, {"l1": (0, 4), "l2": (1, 1)})
    ret = Return(sale)
    refund = sale.price("l1") * 4 + sale.price("l2")
    async with build_worker(client, engine, settings):
        await sale.ship(engine, world.dc)
        await send(client, settings, ret.authorized(world.dc, ("l1", 4), ("l2", 1)),
                   ret.received(world.dc, (0, 4), (1, 1)),
                   ret.inspected((0, 1, RESTOCK), (0, 1, DAMAGED), (0, 1, VENDOR), (1, 1, RESTOCK)),
                   ret.settled(refund))
        await until(lambda: _pending_is(client, ret, 1), "first inspection pass applied")
        state = await state_of(client, ret)
        assert state.stage is ReturnStage.AWAITING_INSPECTION and await refunds(engine, ret) == []
        assert await stock(engine, world, 0, world.dc) == {"available": 1, "vendor_return": 1,
                                                           "pending_inspection": 1}
        await send(client, settings, ret.inspected((0, 1, RESTOCK)))
        outcome, state = await finish(client, ret)

    assert outcome.stage is ReturnStage.REFUNDED
    assert (outcome.received_units, outcome.accepted_units, outcome.refund_amount) == (5, 5, refund)
    l1 = lines_by_id(state)["l1"]
    assert (l1["restocked"], l1["damaged"], l1["vendor_return"], l1["pending_inspection"]) == (2, 1, 1, 0)
    assert await stock(engine, world, 0, world.dc) == {"available": 2, "vendor_return": 1}
    assert await stock(engine, world, 1, world.dc) == {"available": 1}
    a = world.entity_a
    assert await journal(engine, ret) == {
        (a, "inventory"): cost(world, 0, 3) + cost(world, 1),  # restocked + awaiting the vendor
        (a, "shrink"): cost(world, 0),  # the damaged unit written off
        (a, "cogs"): -(cost(world, 0, 4) + cost(world, 1)),
        (a, "sales_returns"): refund, (a, "cash_clearing"): -refund,
    }
    assert "write_off" in await entry_kinds(engine, ret)
    await assert_checker_ok(database_url)


async def test_return_to_a_store_of_an_order_shipped_from_the_dc(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, world: World, database_url: str) -> None:
    """Shipped from the DC, brought back to a store: the units come into inspection at the store and are restocked
    there. A receipt reported at an unknown location is refused and the return keeps waiting."""
    client, settings = time_skipping_env.client, make_settings()
    sale = Sale(world, {"l1": (0, 2)})
    ret = Return(sale)
    refund = sale.price("l1") * 2
    nowhere = f"NOWHERE-{world.prefix}"
    async with build_worker(client, engine, settings):
        await sale.ship(engine, world.dc)
        await send(client, settings, ret.authorized(world.store, ("l1", 2)), ret.received(nowhere, (0, 2)))
        await until(lambda: _has_note(client, ret, "unknown location"), "the unknown location refused")
        assert (await state_of(client, ret)).stage is ReturnStage.AWAITING_RECEIPT
        await send(client, settings, ret.received(world.store, (0, 2)))
        await until(lambda: _stage_is(client, ret, ReturnStage.AWAITING_INSPECTION), "received at the store")
        assert await stock(engine, world, 0, world.store) == {"pending_inspection": 2}  # never straight to available
        await send(client, settings, ret.inspected((0, 2, RESTOCK)), ret.settled(refund))
        outcome, state = await finish(client, ret)

    assert outcome.stage is ReturnStage.REFUNDED and outcome.refund_amount == refund
    assert [(r.location_id, r.units) for r in state.receipts] == [(world.store, {world.skus[0]: 2})]
    assert await stock(engine, world, 0, world.store) == {"available": 2}
    assert await stock(engine, world, 0, world.dc) == {}
    a, value = world.entity_a, cost(world, 0, 2)
    assert await journal(engine, ret) == {(a, "inventory"): value, (a, "cogs"): -value,
                                          (a, "sales_returns"): refund, (a, "cash_clearing"): -refund}
    sa = (await handle(client, ret).describe()).typed_search_attributes
    assert sa.get(LOCATION_IDS) == [world.store]
    await assert_checker_ok(database_url)


async def _pending_is(client: Client, ret: Return, units: int) -> bool:
    state = await state_of(client, ret)
    return bool(state.lines) and sum(ln["pending_inspection"] for ln in state.lines) == units and any(
        ln["accepted"] for ln in state.lines)


async def _has_note(client: Client, ret: Return, text_: str) -> bool:
    return any(text_ in n for n in (await state_of(client, ret)).notes)


async def test_return_of_more_than_shipped(time_skipping_env: WorkflowEnvironment, engine: AsyncEngine,
                                           world: World, database_url: str) -> None:
    """Line 1 asks back more than shipped (over_return case) and line 9 never shipped: both refused with their
    reasons, line 2 goes on. Units beyond the authorization that arrive anyway are received into
    pending_inspection (never lost), inspected like the rest and never refunded."""
    client, settings = time_skipping_env.client, make_settings()
    sale = Sale(world, {"l1": (0, 2), "l2": (1, 1)})
    ret = Return(sale)
    refund = sale.price("l2")
    async with build_worker(client, engine, settings):
        await sale.ship(engine, world.dc)
        await send(client, settings, ret.authorized(world.dc, ("l1", 3), ("l2", 1), ("l9", 1)),
                   ret.received(world.dc, (0, 3), (1, 2)))
        await until(lambda: _stage_is(client, ret, ReturnStage.AWAITING_INSPECTION), "received")
        assert await stock(engine, world, 0, world.dc) == {"pending_inspection": 3}
        assert await stock(engine, world, 1, world.dc) == {"pending_inspection": 2}
        await send(client, settings, ret.inspected((1, 1, RESTOCK), (0, 3, RESTOCK), (1, 1, DAMAGED)),
                   ret.settled(refund))
        outcome, state = await finish(client, ret)
        await client.get_workflow_handle(ids.exception_workflow_id(ret.workflow_id, "over_return")).terminate(
            "test cleanup")

    assert outcome.stage is ReturnStage.REFUNDED and outcome.refund_amount == refund
    by_id = lines_by_id(state)
    assert by_id["l1"]["authorized"] == 0 and "only 2 of 2 EA" in by_id["l1"]["refused_reason"]
    assert by_id["l1"]["refusal"] == "over_return"
    assert by_id["l9"]["authorized"] == 0 and "never shipped" in by_id["l9"]["refused_reason"]
    assert by_id["l2"]["authorized"] == 1 and by_id["l2"]["refused_reason"] is None
    assert by_id[f"unauthorized:{world.skus[0]}"]["restocked"] == 3
    assert by_id[f"unauthorized:{world.skus[1]}"]["damaged"] == 1
    assert cases(state, "open") == ["over_return"]
    [receipt] = state.receipts
    assert receipt.units == {world.skus[0]: 3, world.skus[1]: 2}
    assert receipt.excess == {world.skus[0]: 3, world.skus[1]: 1}
    assert await stock(engine, world, 0, world.dc) == {"available": 3}
    assert await stock(engine, world, 1, world.dc) == {"available": 1}
    assert await refunds(engine, ret) == [refund]
    a = world.entity_a
    assert await journal(engine, ret) == {(a, "inventory"): cost(world, 0, 3) + cost(world, 1),
                                          (a, "shrink"): cost(world, 1),
                                          (a, "cogs"): -(cost(world, 0, 3) + cost(world, 1, 2)),
                                          (a, "sales_returns"): refund, (a, "cash_clearing"): -refund}
    await assert_checker_ok(database_url)


async def test_every_line_refused_rejects_the_return(time_skipping_env: WorkflowEnvironment, engine: AsyncEngine,
                                                     world: World, database_url: str) -> None:
    client, settings = time_skipping_env.client, make_settings()
    sale = Sale(world, {"l1": (0, 1)})
    ret = Return(sale)
    async with build_worker(client, engine, settings):
        await sale.ship(engine, world.dc)
        await send(client, settings, ret.authorized(world.dc, ("l9", 2)))
        outcome, state = await finish(client, ret)
        late = await dispatch(client, ret.received(world.dc, (0, 2)), settings)
        assert late.status == "late"  # a receipt after the end is never dropped: a LateEvent process has it
        await late_event_done(client, late.case_id)

    assert (outcome.outcome, outcome.stage) == ("rejected", ReturnStage.REJECTED)
    assert "never shipped" in state.lines[0]["refused_reason"] and state.exception_cases == []
    assert await stock(engine, world, 0, world.dc) == {"pending_inspection": 2}  # the late parcel is in the ledger
    assert await journal(engine, ret) == {} and await refunds(engine, ret) == []
    await assert_checker_ok(database_url)


async def test_return_not_received_expires(time_skipping_env: WorkflowEnvironment, engine: AsyncEngine,
                                           world: World, database_url: str) -> None:
    client, settings = time_skipping_env.client, make_settings()
    sale = Sale(world, {"l1": (0, 1)})
    ret = Return(sale)
    async with build_worker(client, engine, settings):
        await sale.ship(engine, world.dc)
        await send(client, settings, ret.authorized(world.dc, ("l1", 1)))
        # skip the 30 days explicitly (a result() long poll over a skip that long returns without the close event)
        await time_skipping_env.sleep(timedelta(days=30, hours=1))
        outcome, state = await finish(client, ret)
        case = client.get_workflow_handle(ids.exception_workflow_id(ret.workflow_id, "return_not_received"))
        assert (await case.describe()).workflow_type == "ExceptionCase"
        late = await dispatch(client, ret.received(world.dc, (0, 1)), settings)
        assert late.status == "late" and late.case_id is not None
        await late_event_done(client, late.case_id)
        # Clean up the open cases: their escalation timers would hold the shared test server's clock once this
        # worker is gone. (Resolving it as ops would, by update or signal, leaves the time-skipping server unable
        # to skip time afterwards, likely through the case's signal to its closed process; terminate instead.)
        await case.terminate("test cleanup")

    assert (outcome.outcome, outcome.stage) == ("expired", ReturnStage.EXPIRED)
    assert cases(state, "open") == ["return_not_received"]
    sa = (await handle(client, ret).describe()).typed_search_attributes
    assert sa.get(STAGE) == "expired" and sa.get(SLA_BREACHED) is True and sa.get(OPEN_EXCEPTIONS) == 1
    # the parcel that came after the return expired is in the ledger, awaiting ops's disposition
    assert await stock(engine, world, 0, world.dc) == {"pending_inspection": 1}
    assert await journal(engine, ret) == {} and await refunds(engine, ret) == []
    await assert_checker_ok(database_url)


async def test_inspection_overdue_opens_a_case_the_inspection_resolves(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, world: World, database_url: str) -> None:
    client, settings = time_skipping_env.client, make_settings()
    sale = Sale(world, {"l1": (0, 1)})
    ret = Return(sale)
    refund = sale.price("l1")
    async with build_worker(client, engine, settings):
        await sale.ship(engine, world.dc)
        await send(client, settings, ret.authorized(world.dc, ("l1", 1)), ret.received(world.dc, (0, 1)))
        await until(lambda: _stage_is(client, ret, ReturnStage.AWAITING_INSPECTION), "received")
        await time_skipping_env.sleep(timedelta(hours=73))
        await until(lambda: _case_is(client, ret, "inspection_overdue", "open"), "inspection_overdue case")
        assert await stock(engine, world, 0, world.dc) == {"pending_inspection": 1}
        await send(client, settings, ret.inspected((0, 1, RESTOCK)), ret.settled(refund))
        outcome, state = await finish(client, ret)
        await case_resolved(client, ret, "inspection_overdue")

    assert outcome.stage is ReturnStage.REFUNDED
    assert cases(state) == ["inspection_overdue"] and cases(state, "resolved") == ["inspection_overdue"]
    sa = (await handle(client, ret).describe()).typed_search_attributes
    assert sa.get(SLA_BREACHED) is True and sa.get(OPEN_EXCEPTIONS) == 0
    assert await stock(engine, world, 0, world.dc) == {"available": 1}
    a, value = world.entity_a, cost(world, 0)
    assert await journal(engine, ret) == {(a, "inventory"): value, (a, "cogs"): -value,
                                          (a, "sales_returns"): refund, (a, "cash_clearing"): -refund}
    await assert_checker_ok(database_url)


async def case_resolved(client: Client, ret: Return, kind: str) -> None:
    """The case the late event resolved has completed, resolved by the process."""
    snapshot = await client.get_workflow_handle(ids.exception_workflow_id(ret.workflow_id, kind),
                                                result_type=CaseSnapshot).result()
    assert snapshot.status == "resolved" and snapshot.resolution is not None
    assert snapshot.resolution.resolved_by == "process"


async def _case_is(client: Client, ret: Return, kind: str, status: str) -> bool:
    return kind in cases(await state_of(client, ret), status)


async def test_refund_overdue_opens_a_case_the_settlement_resolves(
        dev_env: WorkflowEnvironment, engine: AsyncEngine, world: World, database_url: str) -> None:
    """On the dev server with a short refund_overdue (real time): on the time-skipping test server, a skip over
    this breach left the server unable to skip time for every later test of the session (cause not found), so
    this one test stays off it."""
    client, settings = dev_env.client, make_settings(sla={"refund_overdue": timedelta(seconds=2)})
    sale = Sale(world, {"l1": (0, 1)})
    ret = Return(sale)
    refund = sale.price("l1")
    async with build_worker(client, engine, settings):
        await sale.ship(engine, world.dc)
        await send(client, settings, ret.authorized(world.dc, ("l1", 1)), ret.received(world.dc, (0, 1)),
                   ret.inspected((0, 1, DAMAGED)))
        await until(lambda: _case_is(client, ret, "refund_overdue", "open"), "refund_overdue case")
        assert (await state_of(client, ret)).stage is ReturnStage.AWAITING_REFUND_SETTLEMENT
        a, value = world.entity_a, cost(world, 0)
        # refund owed, not yet paid
        assert await journal(engine, ret) == {(a, "shrink"): value, (a, "cogs"): -value,
                                              (a, "sales_returns"): refund, (a, "refunds_payable"): -refund}
        sa = (await handle(client, ret).describe()).typed_search_attributes
        assert sa.get(SLA_BREACHED) is True and sa.get(OPEN_EXCEPTIONS) == 1
        assert sa.get(STAGE) == "awaiting_refund_settlement" and sa.get(SKUS) == [world.skus[0]]
        # current details (user metadata: the dev server only): the lines table and the refund
        metadata = await handle(client, ret).query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
        assert "| l1 | " + world.skus[0] in metadata.current_details
        assert f"Refund: {refund} USD, awaiting refund.settled" in metadata.current_details
        await send(client, settings, ret.settled(refund))
        outcome, state = await finish(client, ret)
        await case_resolved(client, ret, "refund_overdue")

    assert outcome.stage is ReturnStage.REFUNDED and outcome.refund_amount == refund
    assert cases(state, "resolved") == ["refund_overdue"]
    assert await stock(engine, world, 0, world.dc) == {}  # damaged, then written off
    assert await journal(engine, ret) == {(a, "shrink"): value, (a, "cogs"): -value,
                                          (a, "sales_returns"): refund, (a, "cash_clearing"): -refund}
    await assert_checker_ok(database_url)


async def test_early_and_duplicate_events_apply_once(time_skipping_env: WorkflowEnvironment, engine: AsyncEngine,
                                                     world: World, database_url: str) -> None:
    """Receipt, inspection and settlement arrive before the authorization (the first starts the process, which
    holds them); every event is delivered twice; a second authorization under another ID is ignored."""
    client, settings = time_skipping_env.client, make_settings()
    sale = Sale(world, {"l1": (0, 2)})
    ret = Return(sale)
    refund = sale.price("l1") * 2
    early = [ret.received(world.dc, (0, 2)), ret.inspected((0, 2, RESTOCK)), ret.settled(refund)]
    auth = ret.authorized(world.dc, ("l1", 2))
    async with build_worker(client, engine, settings):
        await sale.ship(engine, world.dc)
        await send(client, settings, *early, *early)
        held = await state_of(client, ret)
        assert held.stage is ReturnStage.AWAITING_AUTHORIZATION
        assert held.held_events == ["return.received", "return.inspected", "refund.settled"]
        assert await stock(engine, world, 0, world.dc) == {}
        await send(client, settings, auth, auth, ret.authorized(world.dc, ("l1", 2)))
        outcome, state = await finish(client, ret)

    assert outcome.stage is ReturnStage.REFUNDED and outcome.refund_amount == refund
    assert (outcome.received_units, outcome.accepted_units) == (2, 2)
    assert state.held_events == [] and len(state.receipts) == 1
    assert await refunds(engine, ret) == [refund]
    assert await stock(engine, world, 0, world.dc) == {"available": 2}
    a, value = world.entity_a, cost(world, 0, 2)
    assert await journal(engine, ret) == {(a, "inventory"): value, (a, "cogs"): -value,
                                          (a, "sales_returns"): refund, (a, "cash_clearing"): -refund}
    assert await entry_kinds(engine, ret) == ["disposition", "refund_paid", "return_receipt", "sales_return"]
    await assert_checker_ok(database_url)


async def test_never_authorized_ends_cleanly(time_skipping_env: WorkflowEnvironment, engine: AsyncEngine,
                                             world: World, database_url: str) -> None:
    client, settings = time_skipping_env.client, make_settings()
    ret = Return(Sale(world, {"l1": (0, 1)}))
    parcel = ret.received(world.dc, (0, 1), event_id=unique("wh"))
    async with build_worker(client, engine, settings):
        await send(client, settings, parcel)
        await time_skipping_env.sleep(timedelta(days=7, hours=1))  # past the open timeout
        outcome, state = await finish(client, ret)
        # the parcel it held was handed to the late-event path as the process ended: in the ledger, with a case
        await late_event_done(client, f"exception:late:{parcel.event_id}:late_event")

    assert (outcome.outcome, outcome.stage) == ("never_opened", ReturnStage.NEVER_OPENED)
    assert state.held_events == ["return.received"]
    assert await stock(engine, world, 0, world.dc) == {"pending_inspection": 1} and await journal(engine, ret) == {}
    await assert_checker_ok(database_url)


# --- release 2 (issue 17): rules 1, 4 and 8 ----------------------------------------------------------------------
async def refunds_on(engine: AsyncEngine, ret: Return) -> list[tuple[str | None, Decimal]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT payment_id, amount FROM refunds WHERE return_id = :r"),
                                  {"r": ret.return_id})
        return [(r.payment_id, D(r.amount)) for r in rows]


async def full_return(client: Client, settings: Settings, ret: Return, location_id: str, line_id: str, n: int,
                      units: int, refund: Decimal) -> ReturnOutcome:
    await send(client, settings, ret.authorized(location_id, (line_id, units)), ret.received(location_id, (n, units)),
               ret.inspected((n, units, RESTOCK)), ret.settled(refund))
    outcome, _ = await finish(client, ret)
    return outcome


async def test_a_second_return_of_a_returned_and_refunded_line_is_refused_and_its_goods_still_received(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, world: World, database_url: str) -> None:
    client, settings = time_skipping_env.client, make_settings()
    sale = Sale(world, {"l1": (0, 1)})
    payment = unique("pay")
    first, second = Return(sale), Return(sale)
    price = sale.price("l1")
    async with build_worker(client, engine, settings):
        await sale.ship(engine, world.dc, payment_id=payment, capture=price)
        assert (await full_return(client, settings, first, world.dc, "l1", 0, 1, price)).stage is ReturnStage.REFUNDED
        await send(client, settings, second.authorized(world.dc, ("l1", 1)))
        await until(lambda: _case_is(client, second, "over_return", "open"), "over_return case")
        refused = await state_of(client, second)
        assert refused.stage is ReturnStage.AWAITING_RECEIPT  # the goods may come anyway
        assert "only 0 of 1 EA" in refused.lines[0]["refused_reason"]
        assert "1 EA held by other returns" in refused.lines[0]["refused_reason"]
        # the customer sends it anyway: received into pending_inspection, never lost, never refunded
        await send(client, settings, second.received(world.dc, (0, 1)))
        await until(lambda: _stage_is(client, second, ReturnStage.AWAITING_INSPECTION), "received anyway")
        assert await stock(engine, world, 0, world.dc) == {"available": 1, "pending_inspection": 1}
        await send(client, settings, second.inspected((0, 1, RESTOCK)))
        outcome, state = await finish(client, second)
        await client.get_workflow_handle(ids.exception_workflow_id(second.workflow_id, "over_return")).terminate(
            "test cleanup")

    assert (outcome.outcome, outcome.stage, outcome.received_units) == ("rejected", ReturnStage.REJECTED, 1)
    assert cases(state, "open") == ["over_return"] and state.refund is None
    assert await refunds_on(engine, first) == [(payment, price)] and await refunds_on(engine, second) == []
    assert await stock(engine, world, 0, world.dc) == {"available": 2}
    a, value = world.entity_a, cost(world, 0)
    assert await journal(engine, second) == {(a, "inventory"): value, (a, "cogs"): -value}  # no sales return
    assert await journal(engine, first) == {(a, "inventory"): value, (a, "cogs"): -value,
                                            (a, "sales_returns"): price, (a, "cash_clearing"): -price}
    await assert_checker_ok(database_url)


async def test_refunds_go_to_the_original_payment_and_never_beyond_what_it_captured(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, world: World, database_url: str) -> None:
    """The refund names the shipment's payment, so the POS's refunds <= captured check runs: a payment that
    captured less than the refund refuses it (over_capture case, nothing posted but the goods)."""
    client, settings = time_skipping_env.client, make_settings()
    paid, short = Sale(world, {"l1": (0, 2)}), Sale(world, {"l1": (0, 2)})
    pay_paid, pay_short = unique("pay"), unique("pay")
    price = paid.price("l1")
    ok, refused = Return(paid), Return(short)
    async with build_worker(client, engine, settings):
        await paid.ship(engine, world.dc, payment_id=pay_paid, capture=price * 2)
        await short.ship(engine, world.dc, payment_id=pay_short, capture=price)  # half was never captured
        assert (await full_return(client, settings, ok, world.dc, "l1", 0, 2, price * 2)).stage is ReturnStage.REFUNDED
        await send(client, settings, refused.authorized(world.dc, ("l1", 2)), refused.received(world.dc, (0, 2)),
                   refused.inspected((0, 2, RESTOCK)))
        outcome, state = await finish(client, refused)
        await client.get_workflow_handle(ids.exception_workflow_id(refused.workflow_id, "over_capture")).terminate(
            "test cleanup")

    assert await refunds_on(engine, ok) == [(pay_paid, price * 2)]
    assert (outcome.outcome, outcome.stage) == ("refund_refused", ReturnStage.REFUND_REFUSED)
    assert cases(state, "open") == ["over_capture"] and await refunds_on(engine, refused) == []
    assert any("would exceed what was captured" in n for n in state.notes)
    assert await stock(engine, world, 0, world.dc) == {"available": 4}
    a, value = world.entity_a, cost(world, 0, 2)
    assert await journal(engine, refused) == {(a, "inventory"): value, (a, "cogs"): -value}
    assert await journal(engine, ok) == {(a, "inventory"): value, (a, "cogs"): -value,
                                         (a, "sales_returns"): price * 2, (a, "cash_clearing"): -price * 2}
    await assert_checker_ok(database_url)


async def test_a_ten_euro_line_of_three_units_returned_unit_by_unit_refunds_exactly_ten(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, world: World, database_url: str) -> None:
    client, settings = time_skipping_env.client, make_settings()
    sale = Sale(world, {"l1": (0, 3)})
    payment = unique("pay")
    returns = [Return(sale) for _ in range(3)]
    expected = [D("3.33"), D("3.34"), D("3.33")]
    async with build_worker(client, engine, settings):
        await sale.ship(engine, world.dc, payment_id=payment, capture=D("10.00"), charged={"l1": D("10.00")},
                        unit_prices={"l1": D("3.3333")})
        outcomes = [await full_return(client, settings, ret, world.dc, "l1", 0, 1, amount)
                    for ret, amount in zip(returns, expected, strict=True)]

    assert [o.refund_amount for o in outcomes] == expected and sum(expected) == D("10.00")
    assert [await refunds_on(engine, r) for r in returns] == [[(payment, x)] for x in expected]
    assert await stock(engine, world, 0, world.dc) == {"available": 3}
    a = world.entity_a
    for ret, amount in zip(returns, expected, strict=True):
        assert await journal(engine, ret) == {(a, "inventory"): cost(world, 0), (a, "cogs"): -cost(world, 0),
                                              (a, "sales_returns"): amount, (a, "cash_clearing"): -amount}
    await assert_checker_ok(database_url)


async def test_two_parcels_and_two_inspection_passes_with_units_overdue_for_inspection(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, world: World, database_url: str) -> None:
    """Parcel 1 (2 units) is inspected at once; parcel 2 (1 unit) waits past inspection_overdue: a case opens,
    the second inspection pass resolves it, and the refund covers all three units."""
    client, settings = time_skipping_env.client, make_settings()
    sale = Sale(world, {"l1": (0, 3)})
    ret = Return(sale)
    refund = sale.price("l1") * 3
    async with build_worker(client, engine, settings):
        await sale.ship(engine, world.dc)
        await send(client, settings, ret.authorized(world.dc, ("l1", 3)), ret.received(world.dc, (0, 2)),
                   ret.inspected((0, 2, RESTOCK)))
        await until(lambda: _pending_is(client, ret, 0), "first parcel inspected")
        first = await state_of(client, ret)
        assert first.stage is ReturnStage.AWAITING_INSPECTION and await refunds(engine, ret) == []  # 1 to come
        await send(client, settings, ret.received(world.store, (0, 1)))
        await until(lambda: _pending_is(client, ret, 1), "second parcel received")
        await time_skipping_env.sleep(timedelta(hours=73))
        await until(lambda: _case_is(client, ret, "inspection_overdue", "open"), "inspection_overdue case")
        assert await stock(engine, world, 0, world.store) == {"pending_inspection": 1}
        await send(client, settings, ret.inspected((0, 1, DAMAGED)), ret.settled(refund))
        outcome, state = await finish(client, ret)
        await case_resolved(client, ret, "inspection_overdue")

    assert (outcome.stage, outcome.received_units, outcome.accepted_units) == (ReturnStage.REFUNDED, 3, 3)
    assert outcome.refund_amount == refund and await refunds(engine, ret) == [refund]
    assert [(r.location_id, r.units) for r in state.receipts] == [(world.dc, {world.skus[0]: 2}),
                                                                   (world.store, {world.skus[0]: 1})]
    assert cases(state, "resolved") == ["inspection_overdue"]
    assert await stock(engine, world, 0, world.dc) == {"available": 2}
    assert await stock(engine, world, 0, world.store) == {}  # damaged, written off
    a = world.entity_a
    assert await journal(engine, ret) == {(a, "inventory"): cost(world, 0, 2), (a, "shrink"): cost(world, 0),
                                          (a, "cogs"): -cost(world, 0, 3),
                                          (a, "sales_returns"): refund, (a, "cash_clearing"): -refund}
    await assert_checker_ok(database_url)


async def test_a_return_to_a_store_of_another_entity_posts_in_the_selling_entity_with_intercompany(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, world: World, database_url: str) -> None:
    """Sold and shipped by entity A's DC, brought back to entity B's store: A reverses the cost of goods and
    owes the refund; B holds the units, owed to A through intercompany."""
    client, settings = time_skipping_env.client, make_settings()
    sale = Sale(world, {"l1": (0, 2)})
    ret = Return(sale)
    payment = unique("pay")
    refund = sale.price("l1") * 2
    async with build_worker(client, engine, settings):
        await sale.ship(engine, world.dc, payment_id=payment, capture=refund)
        await send(client, settings, ret.authorized(world.far, ("l1", 2)), ret.received(world.far, (0, 2)))
        await until(lambda: _stage_is(client, ret, ReturnStage.AWAITING_INSPECTION), "received at the far store")
        await assert_checker_ok(database_url)  # in pending_inspection at B, valued in B's books
        await send(client, settings, ret.inspected((0, 2, RESTOCK)), ret.settled(refund))
        outcome, state = await finish(client, ret)

    assert outcome.stage is ReturnStage.REFUNDED and state.refund is not None
    assert state.refund.by_location == {world.dc: refund} and state.refund.payment_id == payment
    assert await stock(engine, world, 0, world.far) == {"available": 2}
    a, b, value = world.entity_a, world.entity_b, cost(world, 0, 2)
    assert await journal(engine, ret) == {
        (a, "intercompany_receivable"): value, (a, "cogs"): -value,
        (a, "sales_returns"): refund, (a, "cash_clearing"): -refund,
        (b, "inventory"): value, (b, "intercompany_payable"): -value,
    }
    await assert_checker_ok(database_url)


# --- release 3: what a return costs, and a long one continues as new -------------------------------------------
RETURN_BUDGET = 16  # Temporal actions of a plain return (issue 19)


async def test_a_plain_return_costs_at_most_its_budget_of_actions(
        dev_env: WorkflowEnvironment, engine: AsyncEngine, world: World, database_url: str) -> None:
    """return.authorized, return.received in full, return.inspected (restock and damaged) and refund.settled, each
    applied before the next is sent, default SLAs: the actions of its real history, counted by Temporal Cloud's
    rules (bench.cost)."""
    client, settings = dev_env.client, make_settings()
    sale = Sale(world, {"l1": (0, 2), "l2": (1, 1)})
    ret = Return(sale)
    refund = sale.price("l1") * 2 + sale.price("l2")
    async with build_worker(client, engine, settings):
        await sale.ship(engine, world.dc, payment_id=unique("pay"), capture=refund)  # as ShipToSettle records it
        await send(client, settings, ret.authorized(world.store, ("l1", 2), ("l2", 1)))
        await until(lambda: _stage_is(client, ret, ReturnStage.AWAITING_RECEIPT), "authorized")
        await send(client, settings, ret.received(world.store, (0, 2), (1, 1)))
        await until(lambda: _stage_is(client, ret, ReturnStage.AWAITING_INSPECTION), "received")
        await send(client, settings, ret.inspected((0, 2, RESTOCK), (1, 1, DAMAGED)))
        await until(lambda: _stage_is(client, ret, ReturnStage.AWAITING_REFUND_SETTLEMENT), "refund issued")
        await send(client, settings, ret.settled(refund))
        outcome, _ = await finish(client, ret)
        counted = count(await handle(client, ret).fetch_history())
    assert outcome.stage is ReturnStage.REFUNDED and outcome.refund_amount == refund
    assert counted.total <= RETURN_BUDGET, dict(counted.actions)
    assert counted.actions["timer started"] <= 2, "a timer only for an earlier deadline (not received, inspection)"
    await assert_checker_ok(database_url)


async def test_a_long_return_continues_as_new_keeping_its_state_and_posting_nothing_twice(
        dev_env: WorkflowEnvironment, engine: AsyncEngine, world: World, database_url: str) -> None:
    """With a tiny `continue_as_new_after` every event is applied in a run of its own: two parcels, two inspection
    passes, a parcel redelivered after the runs changed, the settlement. The state carries over, the redelivery is
    applied once, one refund, the ledger and the journal are those of one return."""
    client, settings = dev_env.client, make_settings()
    sale = Sale(world, {"l1": (0, 3)})
    ret = Return(sale)
    refund = sale.price("l1") * 3
    policy = settings.process_policy("return", "web").model_copy(update={"continue_as_new_after": 10})
    first_parcel = ret.received(world.dc, (0, 2))
    async with build_worker(client, engine, settings):
        await sale.ship(engine, world.dc)
        started = await client.start_workflow(
            ReturnToRefund.run, ProcessInput(business_key=ret.return_id, channel="web", policy=policy),
            id=ret.workflow_id, task_queue=settings.task_queue, start_signal="event",
            start_signal_args=[ret.authorized(world.dc, ("l1", 3))])
        first_run = started.result_run_id
        await until(lambda: _stage_is(client, ret, ReturnStage.AWAITING_RECEIPT), "authorized")
        await started.signal(ReturnToRefund.event, first_parcel)
        await until(lambda: _stage_is(client, ret, ReturnStage.AWAITING_INSPECTION), "first parcel")
        await started.signal(ReturnToRefund.event, ret.inspected((0, 2, RESTOCK)))
        await until(lambda: _pending_is(client, ret, 0), "first parcel inspected")
        await started.signal(ReturnToRefund.event, ret.received(world.store, (0, 1)))
        await until(lambda: _pending_is(client, ret, 1), "second parcel received")
        await started.signal(ReturnToRefund.event, first_parcel)  # redelivered: applied once
        await started.signal(ReturnToRefund.event, ret.inspected((0, 1, DAMAGED)))
        await until(lambda: _stage_is(client, ret, ReturnStage.AWAITING_REFUND_SETTLEMENT), "refund issued")
        await started.signal(ReturnToRefund.event, ret.settled(refund))
        outcome, state = await finish(client, ret)
        first = [e async for e in client.get_workflow_handle(ret.workflow_id, run_id=first_run).fetch_history_events()]
    assert first[-1].event_type == HistoryEvent.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    assert (outcome.stage, outcome.received_units, outcome.accepted_units) == (ReturnStage.REFUNDED, 3, 3)
    assert [(r.location_id, r.units) for r in state.receipts] == [(world.dc, {world.skus[0]: 2}),
                                                                   (world.store, {world.skus[0]: 1})]
    assert state.refund is not None and state.refund.settled_amount == refund and state.exception_cases == []
    assert await refunds(engine, ret) == [refund]
    assert await stock(engine, world, 0, world.dc) == {"available": 2}
    assert await stock(engine, world, 0, world.store) == {}  # damaged, written off
    a = world.entity_a
    assert await journal(engine, ret) == {(a, "inventory"): cost(world, 0, 2), (a, "shrink"): cost(world, 0),
                                          (a, "cogs"): -cost(world, 0, 3),
                                          (a, "sales_returns"): refund, (a, "cash_clearing"): -refund}
    await assert_checker_ok(database_url)

"""The Transfer process end to end: events through `client.dispatch.dispatch` (signal-with-start) on the
time-skipping server, a real worker over the PostgreSQL stubs. Every test asserts the buckets at both ends, the
journal of both legal entities, and the invariant checker."""
import asyncio
import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.enums.v1 import EventType as HistoryEvent
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from adapters.stub_erp import PostgresErp
from bench.cost import count
from client.dispatch import dispatch
from client.names import BUSINESS_KEY, LOCATION_IDS, OPEN_EXCEPTIONS, SKUS, SLA_BREACHED, STAGE
from config.settings import Settings
from devtools.histories import replayer
from domain.events import Event, EventType
from domain.inventory import Bucket, MovementKind
from domain.process import PartialPolicy, ProcessInput
from domain.transfer import CancelRequest, TransferOutcome, TransferStage, TransferState
from tests import support
from tests.ledger_helpers import World, buckets, line, movement
from tests.support import assert_checker_ok, eventually, seeded
from tests.support import test_settings as make_settings
from worker.factory import build_worker
from workflows.transfer import Transfer

pytestmark = pytest.mark.asyncio(loop_scope="session")

A, R, P, T = Bucket.AVAILABLE, Bucket.RESERVED, Bucket.PICKED, Bucket.IN_TRANSIT


@pytest_asyncio.fixture(loop_scope="session")
async def world(engine: AsyncEngine) -> World:
    """Fresh SKUs (cost 2.50 and 3.50, CASE = 12) with 30 and 10 units at the DC of entity A."""
    w = await World().create(PostgresErp(engine))
    await PostgresErp(engine).post_movement(movement(w.key("stock"), MovementKind.RECEIPT,
                                                     line(w.skus[0], w.dc, 30), line(w.skus[1], w.dc, 10)))
    return w


def event(type: EventType, data: dict, event_id: str | None = None) -> Event:
    return support.event(type, data, source="wms", event_id=event_id)


def requested(tid: str, src: str, dst: str, *lines: tuple[str, int, str]) -> Event:
    return event(EventType.TRANSFER_REQUESTED, {"transfer_id": tid, "from_location_id": src, "to_location_id": dst,
                                                "lines": [{"sku": s, "quantity": q, "uom": u} for s, q, u in lines]})


def shipped(tid: str, *lines: tuple[str, int], event_id: str | None = None, complete: bool | None = None) -> Event:
    data: dict = {"transfer_id": tid, "lines": [{"sku": s, "quantity": q} for s, q in lines]}
    if complete is not None:
        data["complete"] = complete
    return event(EventType.TRANSFER_SHIPPED, data, event_id)


def received(tid: str, *lines: tuple[str, int], event_id: str | None = None) -> Event:
    return event(EventType.TRANSFER_RECEIVED,
                 {"transfer_id": tid, "lines": [{"sku": s, "quantity": q} for s, q in lines]}, event_id)


async def state(handle: WorkflowHandle) -> TransferState:
    return await handle.query(Transfer.query_state)


async def until(handle: WorkflowHandle, ok: Callable[[TransferState], bool], what: str,
                limit: float = 30.0) -> TransferState:
    """The `state` once `ok` holds (the process applies events asynchronously)."""
    return await support.eventually(lambda: state(handle), ok, what=what, within=limit)


async def stock(engine: AsyncEngine, sku: str, location_id: str) -> dict[Bucket, int]:
    got = await buckets(PostgresErp(engine), sku, location_id)
    return {b: q for b, q in got.items() if q}


async def journal(engine: AsyncEngine, transfer_id: str, step: str | None = None) -> dict[str, dict[str, Decimal]]:
    """entity -> account -> debit minus credit over the transfer's entries (or one step's), zero sums dropped."""
    sql = ("SELECT e.legal_entity, l.account, sum(l.debit - l.credit) FROM journal_lines l "
           "JOIN journal_entries e ON e.key = l.entry_key WHERE e.reference = :r")
    params = {"r": transfer_id}
    if step:
        sql += " AND e.source_key = :k"
        params["k"] = f"transfer:{transfer_id}:{step}"
    out: dict[str, dict[str, Decimal]] = {}
    async with engine.connect() as conn:
        for entity, account, value in await conn.execute(text(sql + " GROUP BY 1, 2"), params):
            if value:
                out.setdefault(entity, {})[account] = value
    return out


def case_kinds(s: TransferState, status: str | None = None) -> list[str]:
    return sorted(c["kind"] for c in s.exceptions if status is None or c["status"] == status)


class Run:
    """One test's worker and settings."""

    def __init__(self, env: WorkflowEnvironment, engine: AsyncEngine, settings: Settings) -> None:
        self.env, self.client, self.settings = env, env.client, settings
        self.worker = build_worker(env.client, engine, settings)

    async def send(self, e: Event) -> str:
        return (await dispatch(self.client, e, self.settings)).status

    def handle(self, tid: str) -> WorkflowHandle:
        return self.client.get_workflow_handle(f"transfer:{tid}", result_type=TransferOutcome)

    async def finish(self, tid: str) -> tuple[TransferOutcome, TransferState]:
        """The process's result and its final state (queried while the worker still runs)."""
        # Time is moved on explicitly (env.sleep) by the tests that need it; awaiting a result with time skipping
        # unlocked, while a process was still resolving its cases, left the test server's clock stuck.
        out = await asyncio.wait_for(self.handle(tid).result(), timeout=60)
        final = await state(self.handle(tid))
        await self.end_cases(final)
        # the run replays deterministically against today's code (worker's workflows, sandbox and converter)
        replayed = await replayer().replay_workflow(await self.handle(tid).fetch_history(),
                                                    raise_on_replay_failure=False)
        assert replayed.replay_failure is None, replayed.replay_failure
        return out, final

    async def end_cases(self, s: TransferState) -> None:
        """Let resolved cases finish and terminate the open ones (they escalate for ever) while this test's worker
        runs: a case task left on this test's task queue, its worker gone, would stall time skipping for the
        tests after it."""
        for case in s.exceptions:
            handle = self.client.get_workflow_handle(case["exception_id"])
            if case["status"] == "resolved":
                await asyncio.wait_for(handle.result(), timeout=30)
            else:
                await handle.terminate("test over")


def run(env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, **settings: object) -> Run:
    return Run(env, engine, make_settings(database_url=database_url, **settings))


def tid() -> str:
    return f"TR-{uuid.uuid4().hex[:8]}"


# --- tests --------------------------------------------------------------------------------------------------
async def test_within_one_entity_with_uom_conversion_moves_value_through_in_transit(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    r, t = run(time_skipping_env, engine, database_url), tid()
    a, b = world.skus
    ca, cb = world.cost[a], world.cost[b]
    async with r.worker:
        await r.send(requested(t, world.dc, world.store, (a, 2, "CASE"), (b, 4, "EA"), (b, 1, "EA")))
        s = await until(r.handle(t), lambda s: s.stage is TransferStage.REQUESTED and any(x.reserved for x in s.lines), "reserved")
        assert [(x.sku, x.requested, x.reserved) for x in s.lines] == [(a, 24, 24), (b, 5, 5)]
        assert s.location_ids == sorted([world.dc, world.store]) and not s.intercompany
        assert await stock(engine, a, world.dc) == {A: 6, R: 24}
        await r.send(shipped(t, (a, 24), (b, 5)))
        await until(r.handle(t), lambda s: s.stage is TransferStage.IN_TRANSIT, "in transit")
        assert await stock(engine, a, world.dc) == {A: 6}
        assert await stock(engine, a, world.store) == {T: 24}
        assert await journal(engine, t, f"ship:{world.dc}:{world.store}:1") == {
            world.entity_a: {"inventory": -(24 * ca + 5 * cb), "inventory_in_transit": 24 * ca + 5 * cb}}
        await r.send(received(t, (a, 24), (b, 5)))
        out, s = await r.finish(t)
    assert (out.stage, out.shipped, out.received, out.short, out.over) == (TransferStage.RECEIVED, 29, 29, 0, 0)
    assert s.receipt_final_reason == "all received" and s.exceptions == []
    assert await stock(engine, a, world.store) == {A: 24}
    assert await stock(engine, b, world.store) == {A: 5}
    assert await stock(engine, b, world.dc) == {A: 5}
    assert await journal(engine, t) == {}  # inventory -> in transit -> inventory, all within entity A
    assert await journal(engine, t, f"receipt:{s.receipts[0].event_id}") == {
        world.entity_a: {"inventory": 24 * ca + 5 * cb, "inventory_in_transit": -(24 * ca + 5 * cb)}}
    await assert_checker_ok(database_url)


async def test_across_two_entities_short_receipt_is_written_off_after_the_grace(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    r, t = run(time_skipping_env, engine, database_url), tid()
    a = world.skus[0]
    c = world.cost[a]
    async with r.worker:
        await r.send(requested(t, world.dc, world.far, (a, 10, "EA")))
        await r.send(shipped(t, (a, 10)))
        s = await until(r.handle(t), lambda s: s.stage is TransferStage.IN_TRANSIT, "in transit")
        assert s.intercompany and (s.from_legal_entity, s.to_legal_entity) == (world.entity_a, world.entity_b)
        assert await journal(engine, t, f"ship:{world.dc}:{world.far}:1") == {
            world.entity_a: {"inventory": -10 * c, "intercompany_receivable": 10 * c},
            world.entity_b: {"inventory_in_transit": 10 * c, "intercompany_payable": -10 * c}}
        await r.send(received(t, (a, 8)))
        s = await until(r.handle(t), lambda s: s.stage is TransferStage.RECEIVING, "receiving")
        assert s.receipt_grace_until is not None
        assert await stock(engine, a, world.far) == {A: 8, T: 2}
        await time_skipping_env.sleep(timedelta(hours=25))  # the receipt grace (24 h) passes
        out, s = await r.finish(t)
    assert (out.stage, out.received, out.short) == (TransferStage.RECEIVED, 8, 2)
    assert s.receipt_final_reason == "grace expired"
    assert case_kinds(s) == ["receipt_variance"]
    assert [v.model_dump() for v in s.variance] == [{"sku": a, "shipped": 10, "received": 8, "short": 2, "over": 0}]
    assert await stock(engine, a, world.dc) == {A: 20}
    assert await stock(engine, a, world.far) == {A: 8}
    assert await journal(engine, t) == {
        world.entity_a: {"inventory": -10 * c, "intercompany_receivable": 10 * c},
        world.entity_b: {"inventory": 8 * c, "shrink": 2 * c, "intercompany_payable": -10 * c}}
    assert await journal(engine, t, "shrink") == {world.entity_b: {"inventory_in_transit": -2 * c, "shrink": 2 * c}}
    await assert_checker_ok(database_url)


async def test_partial_reservation_and_partial_shipment_release_the_rest(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    r, t = run(time_skipping_env, engine, database_url), tid()
    a, b = world.skus
    async with r.worker:
        # b: 10 at the DC, 3 CASE = 36 asked -> 10 reserved; unknown SKU and unit refused line by line
        await r.send(requested(t, world.dc, world.far, (a, 12, "EA"), (b, 3, "CASE"), ("NOPE", 1, "EA"),
                               (a, 1, "PALLET")))
        s = await until(r.handle(t), lambda s: s.stage is TransferStage.REQUESTED and any(x.reserved for x in s.lines), "reserved")
        assert [(x.sku, x.requested, x.reserved) for x in s.lines] == [(a, 12, 12), (b, 36, 10)]
        assert s.lines[1].shortfall_reason == f"{world.dc} has 10 of {b} available, 36 requested"
        assert [(x.sku, x.reason) for x in s.refused_lines] == [
            ("NOPE", "unknown SKU NOPE"), (a, f"unit 'PALLET' is not defined for {a} (known: CASE, EA)")]
        await r.send(shipped(t, (a, 7), (b, 10), complete=True))  # the last truck: the rest is released at once
        s = await until(r.handle(t), lambda s: s.stage is TransferStage.IN_TRANSIT and s.shipping_final_at, "in transit")
        assert [(x.shipped, x.released) for x in s.lines] == [(7, 5), (10, 0)]
        assert s.shipping_final_reason == "complete"
        assert await stock(engine, a, world.dc) == {A: 23}
        assert await stock(engine, b, world.dc) == {}
        await r.send(received(t, (a, 7), (b, 10)))
        out, s = await r.finish(t)
    assert (out.stage, out.reserved, out.shipped, out.received) == (TransferStage.RECEIVED, 22, 17, 17)
    assert await stock(engine, a, world.far) == {A: 7}
    assert await stock(engine, b, world.far) == {A: 10}
    value = 7 * world.cost[a] + 10 * world.cost[b]
    assert await journal(engine, t) == {
        world.entity_a: {"inventory": -value, "intercompany_receivable": value},
        world.entity_b: {"inventory": value, "intercompany_payable": -value}}
    await assert_checker_ok(database_url)


async def test_partial_policy_reject_refuses_the_whole_transfer(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    r, t = run(time_skipping_env, engine, database_url, partial_transfers=PartialPolicy.REJECT), tid()
    a, b = world.skus
    t2, t3 = tid(), tid()
    async with r.worker:
        await r.send(requested(t, world.dc, world.store, (a, 5, "EA"), (b, 11, "EA")))
        out, s = await r.finish(t)
        await r.send(requested(t2, world.dc, "NOWHERE", (a, 1, "EA")))
        out2, _ = await r.finish(t2)
        await r.send(requested(t3, world.dc, world.store, ("NOPE", 1, "EA")))
        out3, s3 = await r.finish(t3)
    assert out.stage is TransferStage.REFUSED and "partial transfers are refused" in (out.reason or "")
    assert s.lines[1].shortfall_reason == f"{world.dc} has 10 of {b} available, 11 requested"
    assert (out2.stage, out2.reason) == (TransferStage.REFUSED, "unknown location NOWHERE")
    assert (out3.stage, out3.reason) == (TransferStage.REFUSED, "no line of the request could be accepted")
    assert [r.reason for r in s3.refused_lines] == ["unknown SKU NOPE"]
    assert await stock(engine, a, world.dc) == {A: 30}
    assert await stock(engine, b, world.dc) == {A: 10}
    assert await journal(engine, t) == {}
    await assert_checker_ok(database_url)


async def test_over_and_split_receipts(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    r, t = run(time_skipping_env, engine, database_url), tid()
    a, b = world.skus
    ca, cb = world.cost[a], world.cost[b]
    async with r.worker:
        await r.send(requested(t, world.dc, world.far, (a, 10, "EA"), (b, 4, "EA")))
        await r.send(shipped(t, (a, 10), (b, 4)))
        await r.send(received(t, (a, 4), (b, 0)))
        s = await until(r.handle(t), lambda s: len(s.receipts) == 1, "first receipt")
        assert s.stage is TransferStage.RECEIVING
        assert await stock(engine, a, world.far) == {A: 4, T: 6}
        await r.send(received(t, (a, 6), (b, 5)))  # a completes, b arrives with one extra
        out, s = await r.finish(t)
    assert (out.stage, out.received, out.short, out.over) == (TransferStage.RECEIVED, 15, 0, 1)
    assert s.receipt_final_reason == "all received"
    assert s.receipts[1].into_available == {a: 6, b: 4} and s.receipts[1].overage == {b: 1}
    assert case_kinds(s) == ["receipt_variance"]
    assert await stock(engine, a, world.far) == {A: 10}
    assert await stock(engine, b, world.far) == {A: 5}
    shipped_value = 10 * ca + 4 * cb
    assert await journal(engine, t) == {
        world.entity_a: {"inventory": -shipped_value, "intercompany_receivable": shipped_value},
        world.entity_b: {"inventory": shipped_value + cb, "intercompany_payable": -shipped_value, "shrink": -cb}}
    await assert_checker_ok(database_url)


async def test_split_receipts_short_after_the_grace_from_the_last_receipt(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    r, t = run(time_skipping_env, engine, database_url), tid()
    a = world.skus[0]
    c = world.cost[a]
    async with r.worker:
        await r.send(requested(t, world.dc, world.store, (a, 10, "EA")))
        await r.send(shipped(t, (a, 10)))
        await r.send(received(t, (a, 4)))
        await until(r.handle(t), lambda s: len(s.receipts) == 1, "first receipt")
        await time_skipping_env.sleep(timedelta(hours=20))  # within the grace
        await r.send(received(t, (a, 3)))
        s = await until(r.handle(t), lambda s: len(s.receipts) == 2, "second receipt")
        assert s.stage is TransferStage.RECEIVING
        await time_skipping_env.sleep(timedelta(hours=20))  # 40 h after the first receipt, 20 h after the last
        assert (await state(r.handle(t))).stage is TransferStage.RECEIVING
        await time_skipping_env.sleep(timedelta(hours=5))
        out, s = await r.finish(t)
    assert (out.received, out.short) == (7, 3)
    assert await stock(engine, a, world.store) == {A: 7}
    assert await journal(engine, t) == {world.entity_a: {"inventory": -3 * c, "shrink": 3 * c}}
    assert case_kinds(s) == ["receipt_variance"]
    await assert_checker_ok(database_url)


async def test_cancel_before_shipment_releases_and_after_shipment_is_refused(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    r = run(time_skipping_env, engine, database_url)
    t1, t2 = tid(), tid()
    a, b = world.skus
    async with r.worker:
        await r.send(requested(t1, world.dc, world.far, (a, 5, "EA")))
        await until(r.handle(t1), lambda s: any(x.reserved == 5 for x in s.lines), "reserved")
        assert await stock(engine, a, world.dc) == {A: 25, R: 5}
        s = await r.handle(t1).execute_update(Transfer.cancel, CancelRequest(reason="store closed for refit"),
                                              result_type=TransferState)
        assert s.stage is TransferStage.CANCELLED and s.cancel_reason == "store closed for refit"
        out, _ = await r.finish(t1)
        assert out.stage is TransferStage.CANCELLED
        assert await stock(engine, a, world.dc) == {A: 30}

        await r.send(requested(t2, world.dc, world.far, (b, 4, "EA")))
        await r.send(shipped(t2, (b, 4)))
        await until(r.handle(t2), lambda s: s.stage is TransferStage.IN_TRANSIT, "in transit")
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await r.handle(t2).execute_update(Transfer.cancel, CancelRequest(reason="too late"), result_type=TransferState)
        assert f"already shipped: its units are in transit to {world.far}" in str(refused.value.cause)
        assert (await state(r.handle(t2))).stage is TransferStage.IN_TRANSIT
        await r.send(received(t2, (b, 4)))
        assert (await r.finish(t2))[0].stage is TransferStage.RECEIVED
    assert await journal(engine, t1) == {}
    assert await stock(engine, b, world.far) == {A: 4}
    await assert_checker_ok(database_url)


async def test_sla_clocks_breach_open_cases_and_resolve_on_the_event(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    r, t = run(time_skipping_env, engine, database_url), tid()
    a = world.skus[0]
    async with r.worker:
        await r.send(requested(t, world.dc, world.store, (a, 3, "EA")))
        await until(r.handle(t), lambda s: s.stage is TransferStage.REQUESTED and any(x.reserved for x in s.lines), "reserved")
        await time_skipping_env.sleep(timedelta(hours=25))
        s = await until(r.handle(t), lambda s: case_kinds(s, "open") == ["transfer_ship_overdue"], "ship overdue")
        await r.send(shipped(t, (a, 3)))
        await until(r.handle(t), lambda s: case_kinds(s, "resolved") == ["transfer_ship_overdue"], "ship case resolved")
        await time_skipping_env.sleep(timedelta(hours=49))
        await until(r.handle(t), lambda s: case_kinds(s, "open") == ["transfer_overdue"], "transfer overdue")
        await r.send(received(t, (a, 3)))
        out, s = await r.finish(t)
    assert out.stage is TransferStage.RECEIVED
    assert case_kinds(s, "resolved") == ["transfer_overdue", "transfer_ship_overdue"]
    assert await stock(engine, a, world.store) == {A: 3}
    assert await stock(engine, a, world.dc) == {A: 27}
    assert await journal(engine, t) == {}
    await assert_checker_ok(database_url)


async def test_early_and_duplicate_events_are_held_and_applied_once(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    r, t = run(time_skipping_env, engine, database_url), tid()
    a = world.skus[0]
    c = world.cost[a]
    async with r.worker:
        early = shipped(t, (a, 6), event_id="ship-1")
        await r.send(early)  # shipped before requested: starts the process, held
        s = await until(r.handle(t), lambda s: s.stage is TransferStage.AWAITING_REQUEST, "awaiting request")
        await r.send(early)
        receipt = received(t, (a, 6), event_id="recv-1")
        await r.send(receipt)
        opening = requested(t, world.dc, world.far, (a, 6, "EA"))
        await r.send(opening)
        await r.send(opening)
        await r.send(receipt)
        out, s = await r.finish(t)
    assert (out.stage, out.shipped, out.received, out.short, out.over) == (TransferStage.RECEIVED, 6, 6, 0, 0)
    assert s.duplicate_events == 3 and len(s.receipts) == 1 and s.ignored_events == []
    assert await stock(engine, a, world.dc) == {A: 24}
    assert await stock(engine, a, world.far) == {A: 6}
    assert await journal(engine, t) == {
        world.entity_a: {"inventory": -6 * c, "intercompany_receivable": 6 * c},
        world.entity_b: {"inventory": 6 * c, "intercompany_payable": -6 * c}}
    await assert_checker_ok(database_url)


async def test_never_requested_ends_after_the_open_timeout(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    r, t = run(time_skipping_env, engine, database_url), tid()
    async with r.worker:
        await r.send(received(t, (world.skus[0], 2), event_id="lonely"))
        await time_skipping_env.sleep(timedelta(days=7, hours=1))  # the open timeout passes
        out, s = await r.finish(t)
    assert out.stage is TransferStage.EXPIRED
    assert s.ignored_events == ["lonely"]
    assert await journal(engine, t) == {}
    await assert_checker_ok(database_url)


async def test_demo_catalog_across_entities_on_the_dev_server_shows_search_attributes_and_details(
        dev_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str) -> None:
    """DC-EAST (RF-EAST) -> ST-SFO (RF-WEST) with the demo catalog, on the dev server: search attributes and
    current details (user metadata) as ops sees them."""
    await seeded(database_url)
    r, t = run(dev_env, engine, database_url), tid()
    sku, cost = "HOM-MUG-SAND", Decimal("2.20")  # CASE = 12
    before_dc = (await stock(engine, sku, "DC-EAST"))[A]
    before_store = (await stock(engine, sku, "ST-SFO")).get(A, 0)
    async with r.worker:
        await r.send(requested(t, "DC-EAST", "ST-SFO", (sku, 1, "CASE")))
        await r.send(shipped(t, (sku, 12)))
        s = await until(r.handle(t), lambda s: s.stage is TransferStage.IN_TRANSIT, "in transit")
        assert (s.from_legal_entity, s.to_legal_entity, s.intercompany) == ("RF-EAST", "RF-WEST", True)
        sa = (await r.handle(t).describe()).typed_search_attributes
        assert sa.get(STAGE) == "in_transit" and sa.get(BUSINESS_KEY) == t
        assert sa.get(SKUS) == [sku] and sa.get(LOCATION_IDS) == ["DC-EAST", "ST-SFO"]
        assert sa.get(OPEN_EXCEPTIONS) == 0 and sa.get(SLA_BREACHED) is False
        metadata = await r.handle(t).query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
        assert f"| {sku} | 12 | 12 | 12 | 0 | 12 | 0 | 0 |" in metadata.current_details
        assert "intercompany RF-EAST -> RF-WEST" in metadata.current_details
        assert await stock(engine, sku, "ST-SFO") == {**({A: before_store} if before_store else {}), T: 12}
        await r.send(received(t, (sku, 12)))
        out, s = await r.finish(t)
        sa = (await r.handle(t).describe()).typed_search_attributes
        assert sa.get(STAGE) == "received"
    assert (out.stage, out.shipped, out.received) == (TransferStage.RECEIVED, 12, 12)
    assert (await stock(engine, sku, "DC-EAST"))[A] == before_dc - 12
    assert await stock(engine, sku, "ST-SFO") == {A: before_store + 12}
    assert await journal(engine, t) == {
        "RF-EAST": {"inventory": -12 * cost, "intercompany_receivable": 12 * cost},
        "RF-WEST": {"inventory": 12 * cost, "intercompany_payable": -12 * cost}}
    await assert_checker_ok(database_url)


# --- release 2: several trucks and receipts, in any order ---------------------------------------------------
async def network(engine: AsyncEngine, world: World) -> dict[str, int]:
    """Units per SKU over every location of the world, all buckets: a transfer must not change them except by a
    genuine overage or shrink."""
    out = {}
    for sku in world.skus:
        out[sku] = sum([sum((await stock(engine, sku, loc)).values()) for loc in world.location_ids])
    return out


async def test_two_trucks_then_one_receipt_ship_the_reservation_in_two_parts(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    r, t = run(time_skipping_env, engine, database_url), tid()
    a = world.skus[0]
    c = world.cost[a]
    before = await network(engine, world)
    async with r.worker:
        await r.send(requested(t, world.dc, world.far, (a, 10, "EA")))
        await r.send(shipped(t, (a, 6)))
        s = await until(r.handle(t), lambda s: len(s.shipments) == 1, "first truck")
        assert s.stage is TransferStage.IN_TRANSIT and s.shipping_final_at is None and s.ship_grace_until
        assert await stock(engine, a, world.dc) == {A: 20, R: 4}  # the rest stays reserved for the next truck
        assert await stock(engine, a, world.far) == {T: 6}
        await r.send(shipped(t, (a, 4)))
        s = await until(r.handle(t), lambda s: len(s.shipments) == 2, "second truck")
        assert s.shipping_final_reason == "all reserved shipped"
        assert await stock(engine, a, world.far) == {T: 10}
        await r.send(received(t, (a, 10)))
        out, s = await r.finish(t)
    assert (out.stage, out.shipped, out.received, out.short, out.over) == (TransferStage.RECEIVED, 10, 10, 0, 0)
    assert [n.shipped for n in s.shipments] == [{a: 6}, {a: 4}] and s.exceptions == []
    assert s.receipts[0].into_available == {a: 10} and s.receipts[0].held == {}
    assert await stock(engine, a, world.dc) == {A: 20}
    assert await stock(engine, a, world.far) == {A: 10}
    assert await network(engine, world) == before
    assert await journal(engine, t) == {
        world.entity_a: {"inventory": -10 * c, "intercompany_receivable": 10 * c},
        world.entity_b: {"inventory": 10 * c, "intercompany_payable": -10 * c}}
    assert await journal(engine, t, f"ship:{world.dc}:{world.far}:2") == {
        world.entity_a: {"inventory": -4 * c, "intercompany_receivable": 4 * c},
        world.entity_b: {"inventory_in_transit": 4 * c, "intercompany_payable": -4 * c}}
    await assert_checker_ok(database_url)


async def test_a_receipt_before_the_second_notice_is_held_then_matched_never_an_overage(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    r, t = run(time_skipping_env, engine, database_url), tid()
    a = world.skus[0]
    c = world.cost[a]
    before = await network(engine, world)
    async with r.worker:
        await r.send(requested(t, world.dc, world.store, (a, 10, "EA")))
        await r.send(shipped(t, (a, 6)))
        await r.send(received(t, (a, 10)))  # the second truck came before its notice
        s = await until(r.handle(t), lambda s: len(s.receipts) == 1, "receipt")
        assert s.stage is TransferStage.RECEIVING
        assert s.receipts[0].into_available == {a: 6} and s.receipts[0].held == {a: 4} and s.receipts[0].overage == {}
        assert s.line(a).held == 4
        assert await stock(engine, a, world.store) == {A: 6}  # held units are not posted
        assert await stock(engine, a, world.dc) == {A: 20, R: 4}
        assert await network(engine, world) == before
        await r.send(shipped(t, (a, 4), complete=True))
        out, s = await r.finish(t)
    assert (out.stage, out.shipped, out.received, out.over, out.short) == (TransferStage.RECEIVED, 10, 10, 0, 0)
    assert s.shipments[1].matched == {a: 4} and s.shipping_final_reason == "complete"
    assert s.receipt_final_reason == "all received" and s.exceptions == []
    assert await stock(engine, a, world.store) == {A: 10}
    assert await stock(engine, a, world.dc) == {A: 20}
    assert await network(engine, world) == before
    assert await journal(engine, t) == {}  # all within entity A
    assert await journal(engine, t, "match:2") == {
        world.entity_a: {"inventory": 4 * c, "inventory_in_transit": -4 * c}}
    await assert_checker_ok(database_url)


async def test_receipts_before_any_notice_wait_for_it_and_the_ship_clock_keeps_running(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    r, t = run(time_skipping_env, engine, database_url), tid()
    a, b = world.skus
    before = await network(engine, world)
    async with r.worker:
        await r.send(requested(t, world.dc, world.far, (a, 8, "EA"), (b, 2, "EA")))
        await until(r.handle(t), lambda s: any(x.reserved for x in s.lines), "reserved")
        await r.send(received(t, (a, 5)))
        await r.send(received(t, (a, 3), (b, 2)))
        s = await until(r.handle(t), lambda s: len(s.receipts) == 2, "two receipts")
        assert [x.held for x in s.lines] == [8, 2] and s.stage is TransferStage.RECEIVING
        assert await stock(engine, a, world.far) == {} and await stock(engine, a, world.dc) == {A: 22, R: 8}
        with pytest.raises(WorkflowUpdateFailedError):  # goods arrived: no cancel any more
            await r.handle(t).execute_update(Transfer.cancel, CancelRequest(reason="too late"), result_type=TransferState)
        await time_skipping_env.sleep(timedelta(hours=25))  # the WMS never said what shipped: ops are told
        await until(r.handle(t), lambda s: case_kinds(s, "open") == ["transfer_ship_overdue"], "ship overdue")
        await r.send(shipped(t, (a, 8), (b, 2)))
        out, s = await r.finish(t)
    assert (out.stage, out.shipped, out.received, out.over, out.short) == (TransferStage.RECEIVED, 10, 10, 0, 0)
    assert s.shipments[0].matched == {a: 8, b: 2}
    assert case_kinds(s, "resolved") == ["transfer_ship_overdue"] and case_kinds(s, "open") == []
    assert await stock(engine, a, world.far) == {A: 8} and await stock(engine, b, world.far) == {A: 2}
    assert await stock(engine, a, world.dc) == {A: 22} and await stock(engine, b, world.dc) == {A: 8}
    assert await network(engine, world) == before
    value = 8 * world.cost[a] + 2 * world.cost[b]
    assert await journal(engine, t) == {
        world.entity_a: {"inventory": -value, "intercompany_receivable": value},
        world.entity_b: {"inventory": value, "intercompany_payable": -value}}
    await assert_checker_ok(database_url)


async def test_the_complete_flag_releases_the_unshipped_rest_at_once(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    r, t = run(time_skipping_env, engine, database_url), tid()
    a = world.skus[0]
    before = await network(engine, world)
    async with r.worker:
        await r.send(requested(t, world.dc, world.store, (a, 10, "EA")))
        await r.send(shipped(t, (a, 6), complete=True))
        s = await until(r.handle(t), lambda s: s.shipping_final_at is not None, "shipping final")
        assert s.shipping_final_reason == "complete" and s.ship_grace_until is None
        assert s.line(a).released == 4 and s.line(a).unshipped == 0
        assert await stock(engine, a, world.dc) == {A: 24}
        await r.send(received(t, (a, 6)))
        out, s = await r.finish(t)
    assert (out.stage, out.reserved, out.shipped, out.received, out.short) == (TransferStage.RECEIVED, 10, 6, 6, 0)
    assert s.exceptions == []
    assert await stock(engine, a, world.store) == {A: 6} and await stock(engine, a, world.dc) == {A: 24}
    assert await network(engine, world) == before
    assert await journal(engine, t) == {}
    await assert_checker_ok(database_url)


async def test_the_ship_grace_releases_the_unshipped_rest_after_the_last_notice(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    r, t = run(time_skipping_env, engine, database_url, transfer_ship_grace=timedelta(hours=6)), tid()
    a = world.skus[0]
    c = world.cost[a]
    before = await network(engine, world)
    async with r.worker:
        await r.send(requested(t, world.dc, world.far, (a, 10, "EA")))
        await r.send(shipped(t, (a, 3)))
        await until(r.handle(t), lambda s: len(s.shipments) == 1, "first truck")
        await time_skipping_env.sleep(timedelta(hours=4))
        await r.send(shipped(t, (a, 3)))  # a second truck within the grace: the grace starts again
        await r.send(received(t, (a, 6)))
        s = await until(r.handle(t), lambda s: len(s.receipts) == 1, "receipt")
        assert s.stage is TransferStage.RECEIVING and s.shipping_final_at is None  # all shipped so far is in
        assert await stock(engine, a, world.dc) == {A: 20, R: 4}
        await time_skipping_env.sleep(timedelta(hours=4))  # 8 h after the first notice, 4 h after the last
        assert (await state(r.handle(t))).shipping_final_at is None
        await time_skipping_env.sleep(timedelta(hours=3))
        out, s = await r.finish(t)
    assert (out.stage, out.shipped, out.received, out.short, out.over) == (TransferStage.RECEIVED, 6, 6, 0, 0)
    assert s.shipping_final_reason == "ship grace expired" and s.line(a).released == 4
    assert s.receipt_final_reason == "all received" and s.exceptions == []
    assert await stock(engine, a, world.dc) == {A: 24} and await stock(engine, a, world.far) == {A: 6}
    assert await network(engine, world) == before
    assert await journal(engine, t) == {
        world.entity_a: {"inventory": -6 * c, "intercompany_receivable": 6 * c},
        world.entity_b: {"inventory": 6 * c, "intercompany_payable": -6 * c}}
    await assert_checker_ok(database_url)


async def test_genuine_overage_and_shortage_over_several_trucks_open_one_variance_case(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    r, t = run(time_skipping_env, engine, database_url), tid()
    a, b = world.skus
    ca, cb = world.cost[a], world.cost[b]
    before = await network(engine, world)
    async with r.worker:
        await r.send(requested(t, world.dc, world.store, (a, 10, "EA"), (b, 4, "EA")))
        await r.send(shipped(t, (a, 6)))
        await r.send(received(t, (a, 9), (b, 0)))  # 6 in transit, 3 held for a later truck
        await until(r.handle(t), lambda s: len(s.receipts) == 1, "first receipt")
        await r.send(shipped(t, (a, 2), (b, 4), complete=True))  # 2 of the held match; 1 held is an overage now
        s = await until(r.handle(t), lambda s: s.shipping_final_at is not None, "shipping final")
        assert s.line(a).over == 1 and s.line(a).released == 2 and s.line(a).held == 0
        await r.send(received(t, (b, 3)))
        s = await until(r.handle(t), lambda s: len(s.receipts) == 2, "second receipt")
        assert s.stage is TransferStage.RECEIVING and s.receipt_grace_until is not None
        await time_skipping_env.sleep(timedelta(hours=25))  # the receipt grace: one of b never arrives
        out, s = await r.finish(t)
    assert (out.shipped, out.received, out.short, out.over) == (12, 12, 1, 1)
    assert [v.model_dump() for v in s.variance] == [
        {"sku": a, "shipped": 8, "received": 9, "short": 0, "over": 1},
        {"sku": b, "shipped": 4, "received": 3, "short": 1, "over": 0}]
    assert case_kinds(s) == ["receipt_variance"] and s.receipt_final_reason == "grace expired"
    assert await stock(engine, a, world.store) == {A: 9} and await stock(engine, b, world.store) == {A: 3}
    assert await stock(engine, a, world.dc) == {A: 22} and await stock(engine, b, world.dc) == {A: 6}
    after = await network(engine, world)
    assert after == {a: before[a] + 1, b: before[b] - 1}  # only the genuine overage and shrink, with their case
    assert await journal(engine, t) == {world.entity_a: {"inventory": ca - cb, "shrink": cb - ca}}
    assert await journal(engine, t, "overage:held") == {world.entity_a: {"inventory": ca, "shrink": -ca}}
    await assert_checker_ok(database_url)


async def test_a_notice_overtaken_by_the_complete_one_ships_from_the_source_and_undoes_the_overage(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    """Webhooks reorder: the last truck's notice (`complete`) comes first, the rest is released; the first truck's
    units are counted while shipping is final (an overage then); its notice, last, reserves those units again at
    the source, ships them and undoes the overage. No variance, no case, network units unchanged."""
    r, t = run(time_skipping_env, engine, database_url), tid()
    a, b = world.skus
    before = await network(engine, world)
    async with r.worker:
        await r.send(requested(t, world.dc, world.far, (a, 10, "EA"), (b, 4, "EA")))
        await r.send(shipped(t, (a, 6), (b, 4), complete=True))
        await r.send(received(t, (a, 10)))
        s = await until(r.handle(t), lambda s: len(s.receipts) == 1, "receipt")
        assert s.receipts[0].overage == {a: 4} and await stock(engine, a, world.dc) == {A: 24}
        await r.send(shipped(t, (a, 4)))
        s = await until(r.handle(t), lambda s: len(s.shipments) == 2, "overtaken notice")
        assert s.shipments[1].reserved_more == {a: 4} and s.shipments[1].explained_overage == {a: 4}
        assert s.line(a).over == 0 and await stock(engine, a, world.dc) == {A: 20}
        await r.send(received(t, (b, 4)))
        out, s = await r.finish(t)
    assert (out.stage, out.shipped, out.received, out.short, out.over) == (TransferStage.RECEIVED, 14, 14, 0, 0)
    assert s.exceptions == [] and s.variance == []
    assert await stock(engine, a, world.far) == {A: 10} and await stock(engine, b, world.far) == {A: 4}
    assert await network(engine, world) == before
    value = 10 * world.cost[a] + 4 * world.cost[b]
    assert await journal(engine, t) == {
        world.entity_a: {"inventory": -value, "intercompany_receivable": value},
        world.entity_b: {"inventory": value, "intercompany_payable": -value}}
    await assert_checker_ok(database_url)


# --- release 3: what a transfer costs, and a long one continues as new ----------------------------------------
TRANSFER_BUDGET = 14  # Temporal actions of a plain transfer (issue 19)


async def test_a_plain_transfer_costs_at_most_its_budget_of_actions(
        dev_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    """transfer.requested, transfer.shipped and transfer.received in full, each applied before the next is sent,
    default SLAs: the actions of its real history, counted by Temporal Cloud's rules (bench.cost)."""
    r, t = run(dev_env, engine, database_url), tid()
    a, b = world.skus
    async with r.worker:
        await r.send(requested(t, world.dc, world.store, (a, 3, "EA"), (b, 2, "EA")))
        await eventually(r.handle(t).describe, lambda d: d.typed_search_attributes.get(STAGE) == "requested",
                         what="Stage requested (the request's last task: WMS shipment made, ship clock running)")
        await r.send(shipped(t, (a, 3), (b, 2)))
        await until(r.handle(t), lambda s: s.stage is TransferStage.IN_TRANSIT, "in transit")
        await r.send(received(t, (a, 3), (b, 2)))
        out, _ = await r.finish(t)
        counted = count(await r.handle(t).fetch_history())
    assert out.stage is TransferStage.RECEIVED and out.received == 5
    assert counted.total <= TRANSFER_BUDGET, dict(counted.actions)
    assert counted.actions["timer started"] <= 1, "one SLA timer: transfer_overdue comes later than the armed one"


async def test_a_long_transfer_continues_as_new_keeping_its_state_and_posting_nothing_twice(
        dev_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    """With a tiny `continue_as_new_after` every event is applied in a run of its own: three trucks and two
    receipts, one redelivered after the runs changed. The state carries over, the redelivery is applied once, the
    ledger and the journal are those of one transfer."""
    settings = make_settings(database_url=database_url)
    a = world.skus[0]
    c = world.cost[a]
    t = tid()
    workflow_id = f"transfer:{t}"
    policy = settings.process_policy("transfer", None).model_copy(update={"continue_as_new_after": 10})
    before = await network(engine, world)
    async with build_worker(dev_env.client, engine, settings):
        handle = await dev_env.client.start_workflow(
            Transfer.run, ProcessInput(business_key=t, policy=policy), id=workflow_id,
            task_queue=settings.task_queue, start_signal="event",
            start_signal_args=[requested(t, world.dc, world.far, (a, 9, "EA"))])
        first_run = handle.result_run_id
        first_receipt = received(t, (a, 3), event_id="recv-1")
        for n, e in enumerate([shipped(t, (a, 3)), first_receipt, shipped(t, (a, 3)), shipped(t, (a, 3)),
                               first_receipt, received(t, (a, 6))], start=1):
            await handle.signal(Transfer.event, e)
            if n < 5:  # the redelivery (5) is not applied: nothing to wait for
                await until(handle, lambda s, n=n: len(s.shipments) + len(s.receipts) >= n, f"event {n}")
        out = await asyncio.wait_for(handle.result(), timeout=60)
        s = await handle.query(Transfer.query_state)
        first = [e async for e in dev_env.client.get_workflow_handle(workflow_id, run_id=first_run)
                 .fetch_history_events()]
    assert first[-1].event_type == HistoryEvent.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    assert (out.stage, out.shipped, out.received, out.short, out.over) == (TransferStage.RECEIVED, 9, 9, 0, 0)
    assert [n.shipped for n in s.shipments] == [{a: 3}, {a: 3}, {a: 3}] and len(s.receipts) == 2
    assert s.duplicate_events == 1 and s.shipping_final_reason == "all reserved shipped" and s.exceptions == []
    assert await stock(engine, a, world.dc) == {A: 21} and await stock(engine, a, world.far) == {A: 9}
    assert await network(engine, world) == before
    assert await journal(engine, t) == {
        world.entity_a: {"inventory": -9 * c, "intercompany_receivable": 9 * c},
        world.entity_b: {"inventory": 9 * c, "intercompany_payable": -9 * c}}
    await assert_checker_ok(database_url)


async def test_a_running_sla_clock_survives_continue_as_new(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    """The notice is applied, the run continues as new with `transfer_overdue` running: the next run breaches it
    when it is due, and the receipt resolves the case."""
    r, t = run(time_skipping_env, engine, database_url), tid()
    a = world.skus[0]
    policy = r.settings.process_policy("transfer", None).model_copy(update={"continue_as_new_after": 10})
    async with r.worker:
        handle = await r.client.start_workflow(
            Transfer.run, ProcessInput(business_key=t, policy=policy), id=f"transfer:{t}",
            task_queue=r.settings.task_queue, start_signal="event",
            start_signal_args=[requested(t, world.dc, world.store, (a, 2, "EA"))])
        first_run = handle.result_run_id
        await until(handle, lambda s: any(x.reserved for x in s.lines), "reserved")
        await handle.signal(Transfer.event, shipped(t, (a, 2)))
        await eventually(lambda: r.client.get_workflow_handle(handle.id, run_id=first_run).describe(),
                         lambda d: d.status == WorkflowExecutionStatus.CONTINUED_AS_NEW, what="continued as new")
        await time_skipping_env.sleep(timedelta(hours=49))
        await until(handle, lambda s: case_kinds(s, "open") == ["transfer_overdue"], "transfer overdue")
        await handle.signal(Transfer.event, received(t, (a, 2)))
        out, s = await r.finish(t)
    assert out.stage is TransferStage.RECEIVED and case_kinds(s, "resolved") == ["transfer_overdue"]
    await assert_checker_ok(database_url)


async def test_a_transfer_flooded_before_its_request_continues_as_new_and_keeps_its_deadline(
        time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, world: World) -> None:
    """Receipts with fresh IDs keep coming to a transfer nobody requested: its opening wait continues as new, so
    its history stays short, and it still expires `open_timeout` after the first event (day 7), not after the run
    that the flood began (day 3 + 7)."""
    r, t = run(time_skipping_env, engine, database_url), tid()
    a = world.skus[0]
    policy = r.settings.process_policy("transfer", None).model_copy(update={"continue_as_new_after": 12})
    flood = [f"early-{n}" for n in range(9)]
    async with r.worker:
        handle = await r.client.start_workflow(
            Transfer.run, ProcessInput(business_key=t, policy=policy), id=f"transfer:{t}",
            task_queue=r.settings.task_queue, start_signal="event", start_signal_args=[received(t, (a, 1),
                                                                                                event_id=flood[0])])
        first_run = handle.result_run_id
        await until(handle, lambda s: s.stage is TransferStage.AWAITING_REQUEST, "awaiting its request")
        await time_skipping_env.sleep(timedelta(days=3))
        for event_id in flood[1:]:
            await handle.signal(Transfer.event, received(t, (a, 1), event_id=event_id))
        first = r.client.get_workflow_handle(handle.id, run_id=first_run)
        await eventually(first.describe, lambda d: d.status == WorkflowExecutionStatus.CONTINUED_AS_NEW,
                         what="the opening wait continued as new")
        await until(handle, lambda s: s.stage is TransferStage.AWAITING_REQUEST, "awaiting in the next run")
        await time_skipping_env.sleep(timedelta(days=4, hours=1))  # day 7 + 1 h: past the first run's deadline
        out, s = await r.finish(t)
        first_history = await first.fetch_history()
    assert out.stage is TransferStage.EXPIRED and sorted(s.ignored_events) == sorted(flood)
    assert len(first_history.events) < 40, "the flood's run ended near continue_as_new_after, not with the flood"
    replayed = await replayer().replay_workflow(first_history, raise_on_replay_failure=False)
    assert replayed.replay_failure is None, replayed.replay_failure
    assert await journal(engine, t) == {}
    await assert_checker_ok(database_url)

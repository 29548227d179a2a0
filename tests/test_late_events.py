"""Nothing after close is dropped: an event for an ended process is stored, its goods enter the ledger, and a
case tells ops (workflows/late_event.py). Time-skipping server, real worker, PostgreSQL stubs."""
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from adapters.stub_erp import PostgresErp
from client.dispatch import DispatchResult, dispatch
from config.settings import Settings
from domain import ids
from domain.events import EventType
from domain.late import ClosedProcess, LateAction
from persistence.registry import closed_process, late_events_of, record_closed
from tests.support import assert_checker_ok, terminate_open_cases
from tests.support import test_settings as make_settings
from tests.test_reserve_to_fulfill import (
    cancelled,
    dispatched,
    ev,
    new_order,
    outcome,
    picked,
    place,
    placed,
    start,
    stock,
    until,
    world_with,
)
from worker.factory import build_worker


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ts(module_time_skipping_env: WorkflowEnvironment, database_url: str, engine: AsyncEngine
             ) -> AsyncIterator[Settings]:
    settings = make_settings(database_url=database_url)
    async with build_worker(module_time_skipping_env.client, engine, settings):
        yield settings


async def late(client: Client, engine: AsyncEngine, settings: Settings, event) -> DispatchResult:  # noqa: ANN001
    """Dispatch as the door does (registry first), then wait for the LateEvent process to finish."""
    result = await dispatch(client, event, settings, closed=lambda wf: closed_process(engine, wf))
    assert result.status == "late", result
    await client.get_workflow_handle(ids.late_event_workflow_id(event.event_id)).result()
    return result


async def end_case(client: Client, case_id: str | None) -> None:
    """The case stays open for ops; end it so its escalation timers do not hold the shared test clock."""
    assert case_id is not None
    await terminate_open_cases(client, [case_id])


async def test_a_parcel_dispatched_after_the_cancel_leaves_the_ledger_and_opens_a_case(
        ts: Settings, module_time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str) -> None:
    client, erp = module_time_skipping_env.client, PostgresErp(engine)
    w = await world_with(erp, {(0, "dc"): 10})
    order = new_order()
    h = await start(client, ts, order)
    await place(h, placed(order, [(w.skus[0], 4, "EA", "9.99")]))
    await h.signal("event", picked(order, w.dc, {"1": 4}))
    await until(h, lambda s: s.picked_locations == [w.dc], "picked")
    await h.signal("event", cancelled(order))
    assert (await outcome(h)).outcome == "cancelled"
    assert await stock(erp, w, 0, w.dc) == {"available": 10}  # the cancel gave the units back
    closed = await closed_process(engine, h.id)
    assert closed is not None and closed.outcome == "cancelled" and closed.state["stage"] == "cancelled"

    # the WMS reports the parcel left anyway: the truth wins
    parcel = dispatched(order, "S-late", w.dc, {"1": 4})
    result = await late(client, engine, ts, parcel)
    assert result.case_id == f"exception:late:{parcel.event_id}:shipped_after_cancel"
    assert await stock(erp, w, 0, w.dc) == {"available": 6}  # no phantom stock
    case = await client.get_workflow_handle(result.case_id).describe()
    assert case.workflow_type == "ExceptionCase"
    [stored] = await late_events_of(engine, h.id)
    assert (stored.action, stored.type, stored.case_id) == (LateAction.APPLY, "shipment.dispatched", result.case_id)
    assert stored.payload["data"]["shipment_id"] == "S-late"
    # a redelivery (same identity) is answered the same and applies nothing twice
    assert (await late(client, engine, ts, parcel)).case_id == result.case_id
    assert await stock(erp, w, 0, w.dc) == {"available": 6}
    await assert_checker_ok(database_url)
    await end_case(client, result.case_id)


async def test_a_truck_received_after_the_transfer_closed_enters_available(
        ts: Settings, module_time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str) -> None:
    client, erp = module_time_skipping_env.client, PostgresErp(engine)
    w = await world_with(erp, {})
    transfer_id = f"T-{uuid.uuid4().hex[:8]}"
    await record_closed(engine, ClosedProcess(
        workflow_id=ids.transfer_workflow_id(transfer_id), run_id="r1", workflow_type="Transfer",
        business_key=transfer_id, outcome="received", stage="received", closed_at=datetime.now(UTC),
        state={"to_location_id": w.store, "stage": "received"}))
    receipt = ev(EventType.TRANSFER_RECEIVED, {"transfer_id": transfer_id, "lines": [{"sku": w.skus[0], "quantity": 3}]},
                 source="wms")
    result = await late(client, engine, ts, receipt)
    assert result.case_id is not None and result.case_id.endswith(":late_event")
    assert await stock(erp, w, 0, w.store) == {"available": 3}
    async with engine.connect() as conn:
        reason = await conn.scalar(text("SELECT reason_code FROM movements WHERE key = :k"),
                                   {"k": f"{ids.late_event_workflow_id(receipt.event_id)}:receipt"})
    assert reason == "late_receipt"
    await assert_checker_ok(database_url)
    await end_case(client, result.case_id)


async def test_a_delivery_confirmed_after_settlement_is_only_recorded(
        ts: Settings, module_time_skipping_env: WorkflowEnvironment, engine: AsyncEngine) -> None:
    client = module_time_skipping_env.client
    order = new_order()
    await record_closed(engine, ClosedProcess(
        workflow_id=ids.settle_workflow_id("web", order), run_id="r1", workflow_type="ShipToSettle",
        business_key=f"web/{order}", channel="web", outcome="settled", stage="settled", closed_at=datetime.now(UTC)))
    delivered = ev(EventType.SHIPMENT_DELIVERED, {"shipment_id": "S1", "order_id": order, "channel": "web"},
                   source="carrier")
    result = await late(client, engine, ts, delivered)
    assert result.case_id is None
    [stored] = await late_events_of(engine, ids.settle_workflow_id("web", order))
    assert stored.action is LateAction.RECORD and stored.case_id is None

"""The one mapping from a business event to a process action (update-with-start for order.placed,
signal-with-start otherwise, a LateEvent for an ended process), for the door, the CLI and `forward_event`.
Why each: docs/door.md."""
import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from client.names import BUSINESS_KEY, CHANNEL, TASK_QUEUE
from config.settings import Settings
from domain.events import (
    CountSubmitted,
    Event,
    EventType,
    OrderPlaced,
    OrderShipped,
    PurchaseOrderCreated,
    ReturnAuthorized,
    TransferRequested,
    VendorReturnShipped,
)
from domain.ids import late_event_workflow_id
from domain.late import ClosedProcess, LateEventInput, late_case_id
from domain.order import OrderDecision
from domain.process import ProcessInput
from domain.routing import Route
from domain.routing import route as route_of

EVENT_SIGNAL = "event"  # every process receives its events on this signal
PLACE_UPDATE = "place"  # ReserveToFulfill answers order.placed on this update


class DispatchResult(BaseModel):
    workflow_id: str
    status: Literal["started", "signalled", "duplicate", "late"]
    decision: OrderDecision | None = None  # order.placed only
    case_id: str | None = None  # late: the exception case that tells ops (None when the event changes nothing)


class ProcessClosed(Exception):
    """The event's process has already ended (Temporal refused to start its business key again)."""


# How dispatch asks the process registry whether a business key's process has ended (None: not ended).
ClosedLookup = Callable[[str], Awaitable[ClosedProcess | None]]


def process_input(r: Route, settings: Settings) -> ProcessInput:
    """What a process is started with: its rules resolved from today's settings and recorded in its history."""
    return ProcessInput(business_key=r.business_key, channel=r.channel,
                        policy=settings.process_policy(r.process, r.channel))


def start_summary(event: Event, r: Route) -> str:
    """What the Temporal UI shows for the run (its static summary), from the event that starts it:
    "Order web/1042, 3 lines, ship from DC-EAST"; a process opened by an early event names the event."""
    d = event.data
    if isinstance(d, OrderPlaced):
        where = d.fulfillment.location_id
        how = (f"pickup at {where}" if d.fulfillment.mode == "pickup"
               else f"ship from {where}" if where else "ship")
        return f"Order {r.business_key}, {_lines(d.lines)}, {how}"
    if isinstance(d, TransferRequested):
        return f"Transfer {r.business_key}, {_lines(d.lines)}, {d.from_location_id} -> {d.to_location_id}"
    if isinstance(d, ReturnAuthorized):
        return f"Return {r.business_key} of order {d.channel}/{d.order_id}, {_lines(d.lines)}, to {d.return_location_id}"
    if isinstance(d, OrderShipped):
        return f"Settlement of order {r.business_key}, from shipment {d.shipment_id}"
    if isinstance(d, PurchaseOrderCreated):
        return f"PO {r.business_key} from {d.supplier_id}, {_lines(d.lines)}, to {d.location_id}"
    if isinstance(d, CountSubmitted):
        return f"Count {r.business_key} at {d.location_id}, {len(d.lines)} SKU(s), counted {d.counted_at:%Y-%m-%d %H:%M}"
    if isinstance(d, VendorReturnShipped):
        return f"Return to vendor {r.business_key}: {_lines(d.lines)} from {d.location_id} to {d.supplier_id}"
    return f"{r.workflow_type} {r.business_key} (opened by an early {event.type})"


def _lines(lines: list) -> str:
    return f"{len(lines)} line{'s' if len(lines) != 1 else ''}"


def search_attributes(r: Route) -> TypedSearchAttributes:
    """BusinessKey and Channel, set on every start dispatch makes (free at start; the processes need not upsert
    them, and setting them adds no workflow command)."""
    pairs: list[SearchAttributePair] = [SearchAttributePair(BUSINESS_KEY, r.business_key)]
    if r.channel:
        pairs.append(SearchAttributePair(CHANNEL, r.channel))
    return TypedSearchAttributes(pairs)


def _start_options(r: Route, settings: Settings, event: Event) -> dict:
    return dict(
        id=r.workflow_id,
        task_queue=settings.task_queue or TASK_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        # a finished process is never started again by a late or repeated event
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=search_attributes(r),
        static_summary=start_summary(event, r),
    )


def place_update_id(event: Event) -> str:
    """The `place` update's ID: one per delivery, so a redelivered order.placed (same webhook-id) reaches the
    same update and answers the same decision instead of applying a second time."""
    return f"place:{event.event_id}"


async def dispatch(client: Client, event: Event, settings: Settings, *, route: Route | None = None,
                   closed: ClosedLookup | None = None, decision_timeout: timedelta | None = None) -> DispatchResult:
    """Start or advance the process `event` belongs to, or hand it to a LateEvent process when it has ended.

    `route`: the event's Route when the caller has it already (the door routes before it claims the delivery).
    `closed` looks the business key up in the process registry (the door and forward_event pass it).
    For order.placed with `decision_timeout`: when the decision takes longer, the result has `decision=None`
    (the process exists and will decide; the read API has the decision later, and a redelivery, with the same
    update ID, answers it).

    Raises `WorkflowUpdateFailedError` when the process refuses the order (its update validator or handler failed).
    """
    r = route or route_of(event)
    if closed is not None and (ended := await closed(r.workflow_id)) is not None:
        return await dispatch_late(client, event, settings, r, process_type=ended.workflow_type)
    options = _start_options(r, settings, event)
    try:
        if event.type is EventType.ORDER_PLACED:
            return await _place(client, event, r, settings, options, decision_timeout)
        try:
            handle = await client.start_workflow(
                r.workflow_type, process_input(r, settings), start_signal=EVENT_SIGNAL, start_signal_args=[event],
                **options,
            )
        except WorkflowAlreadyStartedError as already:
            raise ProcessClosed(r.workflow_id) from already
    except ProcessClosed:
        return await dispatch_late(client, event, settings, r, process_type=r.workflow_type)
    return DispatchResult(workflow_id=r.workflow_id, status="started" if _started(handle) else "signalled")


async def dispatch_late(client: Client, event: Event, settings: Settings, r: Route, *, process_type: str
                        ) -> DispatchResult:
    """Start the LateEvent process of `event` (once per event identity) and answer its case."""
    late_id = late_event_workflow_id(event.event_id)
    late = LateEventInput(event=event, process_workflow_id=r.workflow_id, process_type=process_type,
                          business_key=r.business_key, channel=r.channel, sla=settings.sla_policy(r.channel))
    try:
        await client.start_workflow(
            "LateEvent", late, id=late_id, task_queue=settings.task_queue or TASK_QUEUE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=search_attributes(r),
            static_summary=f"Late {event.type} for ended {process_type} {r.business_key}"[:200],
        )
    except WorkflowAlreadyStartedError:
        pass  # this event was handed over before and has been handled: the same answer
    return DispatchResult(workflow_id=r.workflow_id, status="late", case_id=late_case_id(late_id, event.type))


def _started(handle: WorkflowHandle) -> bool:
    """Whether signal-with-start started the process (else it signalled a running one). The server says so in
    its response's `started`; temporalio 1.35 has no public property for it (`first_execution_run_id` is set
    either way on server 1.32+, measured), so it is read, here only, from the response the SDK keeps."""
    return bool(getattr(handle._start_workflow_response, "started", True))


async def _place(client: Client, event: Event, r: Route, settings: Settings, options: dict,
                 decision_timeout: timedelta | None) -> DispatchResult:
    start = WithStartWorkflowOperation(r.workflow_type, process_input(r, settings), **options)
    call = asyncio.ensure_future(client.execute_update_with_start_workflow(
        PLACE_UPDATE, event, start_workflow_operation=start, id=place_update_id(event), result_type=OrderDecision,
    ))
    timeout = decision_timeout.total_seconds() if decision_timeout is not None else None
    try:
        done, _ = await asyncio.wait({call}, timeout=timeout)
        if call not in done and not await _exists(client, r.workflow_id):
            done, _ = await asyncio.wait({call}, timeout=timeout)
    except BaseException:
        # the caller gave up (the door's own bound, a shutdown): the call ends with it, never left running
        _abandon(call)
        raise
    if call not in done:
        # Past the bound (two bounds when the process did not exist yet: Temporal slow). The process will
        # decide: answer without the decision.
        _abandon(call)  # only our wait ends; whether the server admitted the update is now unknown
        # So hand the same event over as a signal too: the process takes order.placed from either door and
        # applies its event_id once, so the decision is made even if the cancelled update never arrived.
        try:
            await client.start_workflow(r.workflow_type, process_input(r, settings), start_signal=EVENT_SIGNAL,
                                        start_signal_args=[event], **options)
        except WorkflowAlreadyStartedError as closed:
            raise ProcessClosed(r.workflow_id) from closed
        return DispatchResult(workflow_id=r.workflow_id, status="started", decision=None)
    try:
        decision = call.result()
    except WorkflowAlreadyStartedError as closed:
        raise ProcessClosed(r.workflow_id) from closed
    started = (await start.workflow_handle()).first_execution_run_id is not None
    return DispatchResult(workflow_id=r.workflow_id, status="started" if started else "signalled",
                          decision=decision)


def _abandon(call: asyncio.Future) -> None:
    """Cancel an update call nobody waits for any more, and retrieve its end (no 'never retrieved' warning)."""
    call.cancel()
    call.add_done_callback(lambda done: done.cancelled() or done.exception())


async def _exists(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe(rpc_timeout=timedelta(seconds=5))
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True

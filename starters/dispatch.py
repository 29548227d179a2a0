"""The one mapping from a business event to a process action, used by the webhooks, the CLI, the demo and by
processes that hand events to each other (the `forward_event` activity).

- `order.placed` is an update-with-start of ReserveToFulfill: the workflow itself answers the reservation
  decision, and a redelivery answers the same decision.
- every other event is a signal-with-start of its process: an event that comes before the one that opens its
  process starts the process, which holds the event until the opening event arrives.

The workflow ID is the business key, so a second start of the same key never makes a second process; the
event's `event_id` (the `webhook-id`) makes a redelivered signal harmless inside the process.
"""
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import TypedSearchAttributes, WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from domain.events import Event, EventType
from domain.order import OrderDecision
from domain.process import ProcessInput
from domain.routing import Route, route
from worker.settings import Settings
from workflows.common import BUSINESS_KEY, CHANNEL, TASK_QUEUE

EVENT_SIGNAL = "event"  # every process receives its events on this signal
PLACE_UPDATE = "place"  # ReserveToFulfill answers order.placed on this update


class DispatchResult(BaseModel):
    workflow_id: str
    status: Literal["started", "signalled", "duplicate"]
    decision: OrderDecision | None = None  # order.placed only


class ProcessClosed(Exception):
    """The event's process has already ended; the event changes nothing."""


def process_input(r: Route, settings: Settings) -> ProcessInput:
    """What a process is started with: its rules resolved from today's settings and recorded in its history."""
    return ProcessInput(business_key=r.business_key, channel=r.channel,
                        policy=settings.process_policy(r.process, r.channel))


def _start_options(r: Route, settings: Settings) -> dict:
    attrs = [BUSINESS_KEY.value_set(r.business_key)]
    if r.channel:
        attrs.append(CHANNEL.value_set(r.channel))
    return dict(
        id=r.workflow_id,
        task_queue=settings.task_queue or TASK_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        # a finished process is never started again by a late or repeated event
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=TypedSearchAttributes(attrs),
        static_summary=f"{r.workflow_type} {r.business_key}",
    )


async def dispatch(client: Client, event: Event, settings: Settings,
                   *, decision_timeout: timedelta | None = None) -> DispatchResult:
    """Start or advance the process `event` belongs to.

    Raises `ProcessClosed` when the process has already ended (the caller answers it as a duplicate).
    """
    r = route(event)
    options = _start_options(r, settings)
    if event.type is EventType.ORDER_PLACED:
        start = WithStartWorkflowOperation(r.workflow_type, process_input(r, settings), **options)
        try:
            decision = await client.execute_update_with_start_workflow(
                PLACE_UPDATE, event, start_workflow_operation=start, result_type=OrderDecision,
                rpc_timeout=decision_timeout,
            )
        except WorkflowAlreadyStartedError as closed:
            raise ProcessClosed(r.workflow_id) from closed
        except WorkflowUpdateFailedError:
            raise
        started = (await start.workflow_handle()).first_execution_run_id is not None
        return DispatchResult(workflow_id=r.workflow_id, status="started" if started else "signalled",
                              decision=decision)
    try:
        handle = await client.start_workflow(
            r.workflow_type, process_input(r, settings), start_signal=EVENT_SIGNAL, start_signal_args=[event],
            **options,
        )
    except WorkflowAlreadyStartedError as closed:
        raise ProcessClosed(r.workflow_id) from closed
    status = "started" if handle.first_execution_run_id else "signalled"
    return DispatchResult(workflow_id=r.workflow_id, status=status)

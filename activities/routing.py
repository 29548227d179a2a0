"""Hand events between processes through the same router the webhooks use (client.dispatch), and close a
process: its registry entry, what it hands over, and what it still held, in one activity (release 3)."""
from functools import partial

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.client import Client

from client.dispatch import dispatch
from config.settings import Settings
from domain.events import Event
from domain.late import ClosedProcess
from persistence.registry import closed_process, record_closed


class ForwardResult(BaseModel):
    workflow_id: str
    status: str  # started | signalled | late (the process had ended: a LateEvent process has the event)


class ClosingInput(BaseModel):
    """A process's last step: enter it in the registry, then hand `hand_over` to the processes they route to
    (e.g. the order's last shipment to ShipToSettle) and `unapplied` (events it held but never applied) to the
    late-event path. Each part is idempotent (registry by workflow ID, forwards by event_id): a retry is harmless."""

    closed: ClosedProcess
    hand_over: list[Event] = []
    unapplied: list[Event] = []


class ClosingResult(BaseModel):
    entered: bool  # False on a retry that found the entry
    forwarded: list[ForwardResult] = []


class RoutingActivities:
    def __init__(self, client: Client, settings: Settings, engine: AsyncEngine) -> None:
        self.client = client
        self.settings = settings
        self.engine = engine

    @activity.defn(name="forward_event")
    async def forward_event(self, event: Event) -> ForwardResult:
        """Signal-with-start the process `event` routes to; the event_id makes a retry harmless."""
        return await self._forward(event)

    @activity.defn(name="close_process")
    async def close_process(self, closing: ClosingInput) -> ClosingResult:
        """The last step of every release-3 process (workflows.process.Process.close)."""
        entered = await record_closed(self.engine, closing.closed)
        forwarded = [await self._forward(event) for event in [*closing.hand_over, *closing.unapplied]]
        return ClosingResult(entered=entered, forwarded=forwarded)

    async def _forward(self, event: Event) -> ForwardResult:
        result = await dispatch(self.client, event, self.settings, closed=partial(closed_process, self.engine))
        if result.status == "late":
            activity.logger.warning("forward_event: process already closed", extra={"workflow_id": result.workflow_id})
        return ForwardResult(workflow_id=result.workflow_id, status=result.status)

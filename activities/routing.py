"""Hand an event from one process to another through the same router the webhooks use (client.dispatch)."""
from functools import partial

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.client import Client

from client.dispatch import dispatch
from config.settings import Settings
from domain.events import Event
from persistence.registry import closed_process


class ForwardResult(BaseModel):
    workflow_id: str
    status: str  # started | signalled | late (the process had ended: a LateEvent process has the event)


class RoutingActivities:
    def __init__(self, client: Client, settings: Settings, engine: AsyncEngine) -> None:
        self.client = client
        self.settings = settings
        self.engine = engine

    @activity.defn(name="forward_event")
    async def forward_event(self, event: Event) -> ForwardResult:
        """Signal-with-start the process `event` routes to; the event_id makes a retry harmless."""
        result = await dispatch(self.client, event, self.settings, closed=partial(closed_process, self.engine))
        if result.status == "late":
            activity.logger.warning("forward_event: process already closed", extra={"workflow_id": result.workflow_id})
        return ForwardResult(workflow_id=result.workflow_id, status=result.status)

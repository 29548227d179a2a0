"""Hand an event from one process to another through the same router the webhooks use (client.dispatch)."""
from typing import TYPE_CHECKING

from pydantic import BaseModel
from temporalio import activity

from client.dispatch import dispatch
from domain.events import Event
from persistence.registry import closed_process

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine
    from temporalio.client import Client

    from config.settings import Settings


class ForwardResult(BaseModel):
    workflow_id: str
    status: str  # started | signalled | late (the process had ended: a LateEvent process has the event)


class RoutingActivities:
    def __init__(self, client: "Client", settings: "Settings", engine: "AsyncEngine | None" = None) -> None:
        self.client = client
        self.settings = settings
        self.engine = engine

    @activity.defn(name="forward_event")
    async def forward_event(self, event: Event) -> ForwardResult:
        """Signal-with-start the process `event` routes to; the event_id makes a retry harmless."""
        engine = self.engine

        def closed(wf: str):  # noqa: ANN202
            return closed_process(engine, wf)

        result = await dispatch(self.client, event, self.settings, closed=closed if engine is not None else None)
        if result.status == "late":
            activity.logger.warning("forward_event: process already closed", extra={"workflow_id": result.workflow_id})
        return ForwardResult(workflow_id=result.workflow_id, status=result.status)

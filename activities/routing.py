"""Hand an event from one process to another through the same mapping the webhooks use (starters.dispatch)."""
from typing import TYPE_CHECKING

from pydantic import BaseModel
from temporalio import activity

from domain.events import Event

if TYPE_CHECKING:
    from temporalio.client import Client

    from worker.settings import Settings


class ForwardResult(BaseModel):
    workflow_id: str
    status: str  # started | signalled | closed


class RoutingActivities:
    def __init__(self, client: "Client", settings: "Settings") -> None:
        self.client = client
        self.settings = settings

    @activity.defn(name="forward_event")
    async def forward_event(self, event: Event) -> ForwardResult:
        """Signal-with-start the process `event` routes to; the event_id makes a retry harmless."""
        from starters.dispatch import ProcessClosed, dispatch

        try:
            result = await dispatch(self.client, event, self.settings)
        except ProcessClosed as closed:
            activity.logger.warning("forward_event: process already closed", extra={"workflow_id": str(closed)})
            return ForwardResult(workflow_id=str(closed), status="closed")
        return ForwardResult(workflow_id=result.workflow_id, status=result.status)

"""Hand an event from one process to another through the same mapping the webhooks use.

INTERFACE STUB (foundation): implemented by the webhook issue (starters/dispatch.py).
"""
from pydantic import BaseModel
from temporalio import activity

from domain.events import Event


class ForwardResult(BaseModel):
    workflow_id: str
    status: str  # started | signalled


class RoutingActivities:
    def __init__(self, client: "object", settings: "object") -> None:
        self.client = client
        self.settings = settings

    @activity.defn(name="forward_event")
    async def forward_event(self, event: Event) -> ForwardResult:
        """Signal-with-start the process `event` routes to; the event_id makes a retry harmless."""
        raise NotImplementedError

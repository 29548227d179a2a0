"""Activities of the process registry and of late events: a process enters itself in the registry as its last
step; the LateEvent workflow stores a late event and reads the ended process it belongs to."""
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from domain.late import ClosedProcess, LateEventRecord
from persistence import registry


class ClosedProcessQuery(BaseModel):
    workflow_id: str


class ClosedProcessAnswer(BaseModel):
    process: ClosedProcess | None = None


class RegistryActivities:
    def __init__(self, engine: AsyncEngine, client: Client) -> None:
        self.engine = engine
        self.client = client

    @activity.defn(name="record_closed_process")
    async def record_closed_process(self, record: ClosedProcess) -> bool:
        return await registry.record_closed(self.engine, record)

    @activity.defn(name="record_late_event")
    async def record_late_event(self, record: LateEventRecord) -> bool:
        return await registry.record_late_event(self.engine, record)

    @activity.defn(name="closed_process")
    async def closed_process(self, query: ClosedProcessQuery) -> ClosedProcessAnswer:
        """The ended process's record; for a run of release 1.0 (which did not enter itself) its final state
        from Temporal while the run is kept, else nothing."""
        found = await registry.closed_process(self.engine, query.workflow_id)
        if found is not None:
            return ClosedProcessAnswer(process=found)
        handle = self.client.get_workflow_handle(query.workflow_id)
        try:
            described = await handle.describe()
            state = await handle.query("state")
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return ClosedProcessAnswer()
            raise
        if isinstance(state, BaseModel):
            state = state.model_dump(mode="json")
        state = state if isinstance(state, dict) else {}
        return ClosedProcessAnswer(process=ClosedProcess(
            workflow_id=query.workflow_id, run_id=described.run_id, workflow_type=described.workflow_type,
            business_key=str(state.get("business_key", query.workflow_id)), channel=state.get("channel"),
            outcome="unknown", stage=str(state.get("stage", "unknown")),
            closed_at=described.close_time or described.start_time, state=state))

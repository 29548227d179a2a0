"""The release-3 process wiring (workflows/process.py, parts.py, sla.py) on a tiny process of its own, on the dev
server: one upsert per workflow task, start-time search attributes never upserted again, one SLA timer for
several running clocks, continue-as-new carrying the held events, the seen event IDs, the clocks and the state,
and the closing activity entering the process in the registry."""
import asyncio
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.api.enums.v1 import EventType as HistoryEvent
from temporalio.common import SearchAttributePair, TypedSearchAttributes

# KitProcess is defined here, so the sandbox re-imports this module per run: the rest is passed through.
with workflow.unsafe.imports_passed_through():
    from client.names import BUSINESS_KEY, CHANNEL, STAGE
    from domain.events import Event, EventType, OrderCancelled
    from domain.process import ProcessInput, ProcessPolicy
    from domain.sla import SlaKind, SlaPolicy
    from persistence.engine import create_engine
    from persistence.registry import closed_process
    from tests import support
    from worker.factory import build_worker
    from worker.registry import WORKFLOWS, activities
    from workflows.process import Process, Shown


class KitState(BaseModel):
    applied: list[str] = []
    runs: int = 1


@workflow.defn(name="KitProcess")
class KitProcess(Process):
    """Waits for three order.cancelled events (any IDs), refreshing after each; two clocks run meanwhile."""

    process_type = "KitProcess"

    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        super().__init__(input)
        self.state = KitState.model_validate(input.resume) if input.resume else KitState()
        if input.resume:
            self.state.runs += 1
        self.cases.start_clock(SlaKind.PICK_OVERDUE)
        self.cases.start_clock(SlaKind.SHIP_OVERDUE)
        self.refresh()

    def shown(self) -> Shown:
        return Shown(stage=f"applied-{len(self.state.applied)}", skus=["SKU-1"], details=", ".join(self.state.applied))

    @workflow.signal(name="event")
    def event(self, event: Event) -> None:
        self.inbox.offer(event)

    @workflow.query(name="state")
    def query_state(self) -> KitState:
        return self.state

    @workflow.run
    async def run(self, input: ProcessInput) -> KitState:
        while len(self.state.applied) < 3:
            event = await self.inbox.next(EventType.ORDER_CANCELLED)
            self.state.applied.append(event.event_id)
            self.refresh()
            await self.checkpoint(self.state)
        self.cases.stop_all(by="done")
        await self.close("done", "applied-3", self.state)
        return self.state


def cancelled(n: int) -> Event:
    return Event(event_id=f"kit-{n}", type=EventType.ORDER_CANCELLED, occurred_at=datetime.now(UTC), source="web",
                 data=OrderCancelled(order_id="kit", channel="web", reason="test"))


async def _events(handle) -> list:  # noqa: ANN001
    return [e async for e in handle.fetch_history_events()]


async def test_one_upsert_per_task_one_timer_continue_as_new_and_close(dev_env, database_url):
    client = dev_env.client
    settings = support.test_settings(database_url=database_url)
    engine = create_engine(database_url, pool_size=2, max_overflow=0)
    queue = support.unique("kit-queue")
    workflow_id = support.unique("kit")
    policy = ProcessPolicy(sla=SlaPolicy(deadlines={SlaKind.PICK_OVERDUE: timedelta(hours=2),
                                                     SlaKind.SHIP_OVERDUE: timedelta(hours=1)}),
                           continue_as_new_after=12)
    try:
        async with build_worker(client, engine, settings, task_queue=queue, workflows=[*WORKFLOWS, KitProcess],
                                activities=activities(client, engine, settings)):
            handle = await client.start_workflow(
                KitProcess.run, ProcessInput(business_key=workflow_id, channel="web", policy=policy),
                id=workflow_id, task_queue=queue,
                search_attributes=TypedSearchAttributes([SearchAttributePair(BUSINESS_KEY, workflow_id),
                                                         SearchAttributePair(CHANNEL, "web")]))
            first_run = handle.result_run_id
            # one activation per event (the first task done before the first event); the view writes once a pass
            # of the event loop changes nothing, so even an activation that yields between two changes (the start
            # and an event batched together, or two events) writes once (VIEW_ONCE_PER_TASK)
            await _until_applied(handle, 0)
            await handle.signal(KitProcess.event, cancelled(1))
            await _until_applied(handle, 1)
            await handle.signal(KitProcess.event, cancelled(1))  # a redelivery: applied once
            for n in (2, 3):
                await handle.signal(KitProcess.event, cancelled(n))
                await _until_applied(handle, n)
            result = await handle.result()
            assert [*result.applied] == ["kit-1", "kit-2", "kit-3"]

            history = await _events(client.get_workflow_handle(workflow_id, run_id=first_run))
            kinds = [e.event_type for e in history]
            upserts = [e for e in history if e.event_type == HistoryEvent.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES]
            assert max(support.upserts_per_task(history)) == 1, "more than one upsert in a workflow task"
            for upsert in upserts:
                fields = upsert.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
                assert "BusinessKey" not in fields and "Channel" not in fields, "start-time attributes upserted"
            assert kinds.count(HistoryEvent.EVENT_TYPE_TIMER_STARTED) == 1, "two clocks, one timer"
            assert kinds[-1] == HistoryEvent.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
            assert result.runs == 2, "the state came back in the next run"

            described = await handle.describe()
            assert described.typed_search_attributes.get(STAGE) == "applied-3"
            entry = await closed_process(engine, workflow_id)
            assert entry is not None and entry.outcome == "done"
    finally:
        await engine.dispose()


async def _until_applied(handle, n: int) -> None:  # noqa: ANN001
    for _ in range(100):
        if len((await handle.query(KitProcess.query_state)).applied) >= n:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{n} events not applied in 10 s")

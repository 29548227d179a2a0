"""One upsert per workflow task when the task runs local activities (workflows/parts.py, `VIEW_ONCE_PER_TASK`).

A task that changes the view, runs a local activity, changes it again, runs another and changes it once more is
several activations of one workflow task; the view writes all of it as one upsert after the last. Before the patch
it wrote at every yield: an upsert before each local activity and one after (release 3.1's histories show it)."""
import pytest
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType as HistoryEvent
from temporalio.common import SearchAttributePair, TypedSearchAttributes

# KitSteps is defined here, so the sandbox re-imports this module per run: the rest is passed through.
with workflow.unsafe.imports_passed_through():
    from client.names import BUSINESS_KEY, CHANNEL, STAGE
    from devtools.histories import replayer
    from domain.process import ProcessInput
    from persistence.engine import create_engine
    from tests import support
    from worker.factory import build_worker
    from worker.registry import WORKFLOWS, activities
    from workflows.calls import call_local
    from workflows.parts import VIEW_ONCE_PER_TASK, ProcessView
    from workflows.process import Process, Shown


class KitStepActivities:
    @activity.defn(name="kit_step")
    async def step(self, n: int) -> int:
        return n + 1


@workflow.defn(name="KitSteps")
class KitSteps(Process):
    """Three stages and two local activities in its first task; a signal, a stage, a local activity and the
    (local) close in its second."""

    process_type = "KitSteps"

    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        super().__init__(input)
        self.stage = "step-0"
        self.go = False

    def shown(self) -> Shown:
        return Shown(stage=self.stage, skus=[f"SKU-{self.stage}"])

    @workflow.signal(name="go")
    def on_go(self) -> None:
        self.go = True

    @workflow.run
    async def run(self, input: ProcessInput) -> str:
        self.refresh()
        n = 0
        for _ in range(2):
            n = await call_local(KitStepActivities.step, n, summary="step")
            self.stage = f"step-{n}"
            self.refresh()
        await workflow.wait_condition(lambda: self.go)
        self.stage = "going"
        self.refresh()
        await call_local(KitStepActivities.step, n, summary="step")
        await self.close("done", "done", Shown(stage="done"), local=True)
        return self.stage


async def _run_kit(client, database_url):  # noqa: ANN001
    """Run one KitSteps to its end on a worker of its own; its history (events) and the WorkflowHistory."""
    settings = support.test_settings(database_url=database_url)
    engine = create_engine(database_url, pool_size=2, max_overflow=0)
    queue = support.unique("kit-queue")
    workflow_id = support.unique("kit-steps")
    try:
        async with build_worker(client, engine, settings, task_queue=queue, workflows=[*WORKFLOWS, KitSteps],
                                activities=[*activities(client, engine, settings), KitStepActivities().step]):
            handle = await client.start_workflow(
                KitSteps.run, ProcessInput(business_key=workflow_id, channel="web"), id=workflow_id,
                task_queue=queue, search_attributes=TypedSearchAttributes(
                    [SearchAttributePair(BUSINESS_KEY, workflow_id), SearchAttributePair(CHANNEL, "web")]))
            await support.eventually(lambda: _described_stage(handle, "step-2"), what="the first task's view")
            await handle.signal(KitSteps.on_go)
            assert await handle.result() == "going"
            return [e async for e in handle.fetch_history_events()], await handle.fetch_history()
    finally:
        await engine.dispose()


async def test_a_task_with_local_activities_writes_its_view_once(dev_env, database_url):
    events, history = await _run_kit(dev_env.client, database_url)
    markers = [e.marker_recorded_event_attributes for e in events
               if e.event_type == HistoryEvent.EVENT_TYPE_MARKER_RECORDED]
    assert any(VIEW_ONCE_PER_TASK.encode() in m.details["patch-data"].payloads[0].data for m in markers
               if m.marker_name == "core_patch"), "a new run takes the patched path"
    per_task = support.upserts_per_task(events)
    assert per_task[0] == 1, f"the first task (2 local activities between 3 stages) wrote {per_task[0]} upserts"
    assert max(per_task) == 1, f"upserts per task: {per_task}"
    assert sum(per_task) == 2, f"one for the first task, one for the closing one: {per_task}"
    await replayer(KitSteps).replay_workflow(history)  # the write lands where it did: no nondeterminism


async def test_without_the_patch_the_same_task_wrote_at_every_yield(dev_env, database_url,
                                                                    monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(ProcessView, "once_per_task", property(lambda self: False))  # as a run of release 3.1
    events, _ = await _run_kit(dev_env.client, database_url)
    assert support.upserts_per_task(events)[0] == 3, "release 3.1 wrote before each local activity and after"


async def _described_stage(handle, stage: str) -> bool:  # noqa: ANN001
    return (await handle.describe()).typed_search_attributes.get(STAGE) == stage

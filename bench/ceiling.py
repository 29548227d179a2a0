"""The ceiling: what the same Temporal server and the same kind of worker do with an order lifecycle of trivial bodies.

`Skeleton` is one workflow type that takes the *shape* of a real process, read from a real history
(`bench.cost.count(...).segments`): after the start and after each incoming message (the `place` update or an
`event` signal) it runs as many activities (a no-op), local activities, SLA-like timers (cancelled at the end) and
search-attribute upserts as the real process did after that message. A skeleton lifecycle is two of them, the
ReserveToFulfill shape and the ShipToSettle shape, driven with the same client calls as the real one:
update-with-start for order.placed, signal-with-start for every other event. As in the real lifecycle the settle
workflow is opened from an activity of the order workflow after the ship: the order's forwards (`forward_event` in
the real history) are `bench_forward` activities that signal-with-start the settle skeleton, and the client sends
the settle's remaining events (delivered, settled) right after the dispatch, as the webhooks do, so an early event
may open it first. No database, no HTTP, no business code: what is left is the price of Temporal itself plus the
SDK on this machine.

`BareOrder` is the latency baseline: update-with-start whose update runs one no-op activity.

The shapes, inputs and activities are in bench/shapes.py, passed through the sandbox like the real workflows'
helpers. The skeleton worker runs in its own process (`python -m bench.ceiling worker ...`) with the same tuning settings and
sandbox as the retailflow worker, on its own task queue.
"""
from __future__ import annotations

import argparse
import asyncio
import time
from datetime import timedelta

from temporalio import workflow
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

with workflow.unsafe.imports_passed_through():
    from bench.shapes import (
        NOOP_TIMEOUT,
        SKELETON_QUEUE,
        SKELETON_WORKFLOW,
        Forwarder,
        ForwardInput,
        SegmentSpec,
        Shape,
        SkeletonInput,
        noop,
    )
    from client.names import STAGE

@workflow.defn(name=SKELETON_WORKFLOW)
class Skeleton:
    @workflow.init
    def __init__(self, input: SkeletonInput) -> None:
        self.input = input
        self.shape = input.shape
        self.signals = 0
        self.updates_done = 0
        self.timers: list[asyncio.Task] = []

    async def _work(self, segment: SegmentSpec) -> None:
        for _ in range(segment.timers):
            self.timers.append(asyncio.create_task(workflow.sleep(timedelta(days=30))))
        for i in range(segment.local_activities):
            await workflow.execute_local_activity(noop, i, start_to_close_timeout=NOOP_TIMEOUT)
        for i in range(segment.activities - segment.forwards):
            await workflow.execute_activity(noop, i, start_to_close_timeout=NOOP_TIMEOUT)
        for _ in range(segment.forwards):
            if self.input.forward_to is None or self.input.forward_shape is None:
                await workflow.execute_activity(noop, 0, start_to_close_timeout=NOOP_TIMEOUT)
                continue
            await workflow.execute_activity_method(
                Forwarder.forward, ForwardInput(workflow_id=self.input.forward_to, shape=self.input.forward_shape,
                                                task_queue=self.input.task_queue),
                start_to_close_timeout=NOOP_TIMEOUT)
        for i in range(segment.upserts):
            workflow.upsert_search_attributes([STAGE.value_set(f"step{len(self.timers)}-{i}")])

    @workflow.run
    async def run(self, input: SkeletonInput) -> int:
        shape = input.shape
        await self._work(shape.segments[0])
        signals_seen = updates_seen = 0
        for segment in shape.segments[1:]:
            if segment.message == "update":
                updates_seen += 1
                await workflow.wait_condition(lambda n=updates_seen: self.updates_done >= n)
            else:
                signals_seen += 1
                await workflow.wait_condition(lambda n=signals_seen: self.signals >= n)
                await self._work(segment)
        for timer in self.timers:
            timer.cancel()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return len(shape.segments)

    @workflow.signal(name="event")
    def event(self, n: int) -> None:
        self.signals += 1

    @workflow.update(name="place")
    async def place(self, n: int) -> int:
        index = [i for i, s in enumerate(self.shape.segments) if s.message == "update"][self.updates_done]
        await self._work(self.shape.segments[index])
        self.updates_done += 1
        return n


@workflow.defn(name="BenchBare")
class BareOrder:
    def __init__(self) -> None:
        self.done = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self.done)

    @workflow.update(name="place")
    async def place(self, n: int) -> int:
        result = await workflow.execute_activity(noop, n, start_to_close_timeout=NOOP_TIMEOUT)
        self.done = True
        return result


# ---- driving ---------------------------------------------------------------------------------------------------

async def _drive(client: Client, workflow_id: str, input: SkeletonInput, messages: list[str]) -> None:
    first = True
    for message in messages:
        if message == "update":
            if first:
                start = WithStartWorkflowOperation(Skeleton.run, input, id=workflow_id, task_queue=input.task_queue,
                                                   id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
                await client.execute_update_with_start_workflow(Skeleton.place, 0, start_workflow_operation=start)
            else:
                await client.get_workflow_handle(workflow_id).execute_update(Skeleton.place, 0)
        else:
            await client.start_workflow(Skeleton.run, input, id=workflow_id, task_queue=input.task_queue,
                                        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                                        start_signal="event", start_signal_args=[0])
        first = False


async def skeleton_lifecycle(client: Client, run: str, n: int, order: Shape, settle: Shape | None,
                             task_queue: str = SKELETON_QUEUE) -> None:
    """One skeleton order lifecycle: the order-shaped workflow and the settle-shaped one (opened by the order's
    forwards, or by the client's first event if it comes first), both to completion."""
    order_id, settle_id = f"bench-order-{run}-{n}", f"bench-settle-{run}-{n}"
    await _drive(client, order_id, SkeletonInput(shape=order, forward_to=settle_id, forward_shape=settle,
                                                 task_queue=task_queue), order.messages)
    ids = [order_id]
    if settle is not None:
        ids.append(settle_id)
        # the forwards bring the first of the settle's events; the client sends the rest, as the webhooks do
        await _drive(client, settle_id, SkeletonInput(shape=settle, task_queue=task_queue),
                     settle.messages[order.forwards:])
    await asyncio.gather(*(client.get_workflow_handle(wid).result() for wid in ids))


async def bare_place(client: Client, workflow_id: str, task_queue: str = SKELETON_QUEUE) -> float:
    """Seconds one bare update-with-start (one activity in the update) takes, as a sender sees it."""
    begun = time.perf_counter()
    start = WithStartWorkflowOperation(BareOrder.run, id=workflow_id, task_queue=task_queue,
                                       id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
    await client.execute_update_with_start_workflow(BareOrder.place, 1, start_workflow_operation=start)
    return time.perf_counter() - begun


# ---- the skeleton worker process -------------------------------------------------------------------------------

def build_skeleton_worker(client: Client, settings, task_queue: str = SKELETON_QUEUE):  # noqa: ANN001, ANN201
    from temporalio.worker import Worker

    from worker.factory import poller_options, workflow_runner

    return Worker(client, task_queue=task_queue, workflows=[Skeleton, BareOrder], activities=[noop, Forwarder(client).forward],
                  workflow_runner=workflow_runner(),
                  max_concurrent_activities=settings.max_concurrent_activities,
                  max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
                  max_cached_workflows=settings.max_cached_workflows,
                  **poller_options(settings))


async def _serve(task_queue: str) -> None:
    import signal

    from client.connect import connect
    from config.settings import Settings

    settings = Settings()
    client = await connect(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with build_skeleton_worker(client, settings, task_queue):
        print("skeleton worker polling", task_queue, flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The bench's skeleton worker (settings from RETAILFLOW_ variables).")
    parser.add_argument("command", choices=["worker"])
    parser.add_argument("--task-queue", default=SKELETON_QUEUE)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.task_queue))


if __name__ == "__main__":
    main()

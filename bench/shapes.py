"""What the skeleton workflows of bench/ceiling.py are given and call: shapes, inputs, the no-op and forward activities.

Apart from the workflow module, so the skeleton's sandbox takes it from the worker (imported once per worker, as the
real workflows take their helpers and frozen releases, worker/factory.py), and the ceiling pays no more per run for
its module graph than a real process does.
"""
from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

SKELETON_QUEUE = "bench-skeleton"
SKELETON_WORKFLOW = "BenchSkeleton"
NOOP_TIMEOUT = timedelta(seconds=30)


class SegmentSpec(BaseModel):
    message: str | None = None  # "update" / "signal" / None (after the start)
    activities: int = 0  # remote activities, forwards included
    forwards: int = 0  # of which hand an event to the settle workflow
    local_activities: int = 0
    timers: int = 0
    upserts: int = 0


class Shape(BaseModel):
    segments: list[SegmentSpec]

    @property
    def messages(self) -> list[str]:
        return [s.message for s in self.segments[1:] if s.message]

    @property
    def forwards(self) -> int:
        return sum(s.forwards for s in self.segments)

    def totals(self) -> dict[str, object]:
        """What must match between a real process and its skeleton, whatever the order the work fell in."""
        return {"messages": self.messages, **{k: sum(getattr(s, k) for s in self.segments) for k in (
            "activities", "forwards", "local_activities", "timers", "upserts")}}


class SkeletonInput(BaseModel):
    shape: Shape
    forward_to: str | None = None  # the settle skeleton's workflow ID, for the forwards
    forward_shape: Shape | None = None
    task_queue: str = SKELETON_QUEUE


class ForwardInput(BaseModel):
    workflow_id: str
    shape: Shape
    task_queue: str


# A typical shape (used by the smoke test and when no real history is at hand); the bench reads the real one.
DEFAULT_ORDER = Shape(segments=[SegmentSpec(upserts=1),
                                SegmentSpec(message="update", activities=2, local_activities=1, timers=3, upserts=1),
                                SegmentSpec(message="signal", activities=1, upserts=1),
                                SegmentSpec(message="signal", activities=4, forwards=2, upserts=1)])
DEFAULT_SETTLE = Shape(segments=[SegmentSpec(), SegmentSpec(message="signal", activities=2, timers=1, upserts=1),
                                 SegmentSpec(message="signal"), SegmentSpec(message="signal", activities=1, upserts=1),
                                 SegmentSpec(message="signal", upserts=1)])


@activity.defn(name="bench_noop")
async def noop(n: int) -> int:
    return n


class Forwarder:
    """The skeleton's `forward_event`: hands an event to the settle skeleton by signal-with-start."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn(name="bench_forward")
    async def forward(self, to: ForwardInput) -> None:
        await self.client.start_workflow(SKELETON_WORKFLOW, SkeletonInput(shape=to.shape), id=to.workflow_id,
                                         task_queue=to.task_queue,
                                         id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                                         start_signal="event", start_signal_args=[0])

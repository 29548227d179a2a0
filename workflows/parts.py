"""The parts every process workflow has: the inbox that holds and de-duplicates its events, the view ops see
(search attributes and current details) and the log bound to its business key. Deterministic, workflow code only.
"""
import asyncio
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel
from temporalio import workflow

from client import names
from domain.events import Event, EventType

# The patch under which a view writes at most one upsert per workflow task, local activities or not (docs/versioning.md,
# "Release 3.2: one upsert per workflow task"). A run started before it writes whenever the workflow yields, as release 3.1 did.
VIEW_ONCE_PER_TASK = "view-once-per-task"


class Inbox:
    """Events a process has received, held until the process is ready for them, each applied once.

    Channels deliver at least once and out of order: an event is accepted once by `event_id`, kept in
    arrival order, and taken by the process when it reaches the stage that consumes it, so an early
    event waits instead of being dropped.
    """

    def __init__(self, pending: Iterable[Event] = (), seen: Iterable[str] = ()) -> None:
        self.pending: list[Event] = []
        self.seen_ids: set[str] = set(seen)
        self.applied_types: list[str] = []
        self.eager = False  # `next` takes a held event without yielding (set by Process: VIEW_ONCE_PER_TASK)
        for event in pending:
            self.seen_ids.discard(event.event_id)
            self.offer(event)

    def offer(self, event: Event) -> bool:
        """Hold `event`; False if this event_id was seen before (a redelivery)."""
        if event.event_id in self.seen_ids:
            return False
        self.seen_ids.add(event.event_id)
        self.pending.append(event)
        return True

    def has(self, *types: EventType) -> bool:
        return any(e.type in types for e in self.pending)

    def take(self, *types: EventType) -> Event | None:
        """Remove and return the oldest held event of one of `types`."""
        for event in self.pending:
            if event.type in types:
                self.remove(event)
                return event
        return None

    def remove(self, event: Event) -> None:
        """Take this held event (the process chose it by its own rule)."""
        self.pending.remove(event)
        self.applied_types.append(str(event.type))

    async def next(self, *types: EventType) -> Event:
        """Wait for, then take, the oldest event of one of `types`."""
        if not (self.eager and self.has(*types)):
            await workflow.wait_condition(lambda: self.has(*types))
        event = self.take(*types)
        assert event is not None
        return event


class Shown(BaseModel):
    """What ops see of a process: its stage, what it touches, and a markdown summary (current details)."""

    stage: str
    skus: list[str] = []
    location_ids: list[str] = []
    details: str = ""


class ProcessView:
    """The search attributes and current details of one run, at most one upsert per workflow task.

    Search attributes set at start (BusinessKey, Channel: client.dispatch sets them, free of charge) are known
    from the start and never upserted again. A change is collected and written by one upsert once the workflow
    task has nothing left to do, so a task that changes the stage, the SKUs and the cases costs one action, not
    four. A task is several activations when it runs local activities (each result comes back in an activation of
    its own, in the same task): `call_local` holds the view while one is in flight (`local_activity`), and the
    write waits until none is and a whole pass of the workflow's event loop changed nothing, so the changes made
    before and after a task's local activities are one upsert. A change made while a local activity retries
    past its first minute (on a timer, over several tasks: an adapter outage) is written when it returns; the
    SLA case itself opens meanwhile, as its own workflow. Current details are not a command: they are set at once.
    """

    def __init__(self) -> None:
        self._values: dict[str, object] = {}
        for pair in workflow.info().typed_search_attributes:
            value = pair.value
            self._values[pair.key.name] = sorted(value) if isinstance(value, list) else value
        self._pending: dict[str, Any] = {}
        self._flush_task: asyncio.Task[None] | None = None
        self._details = ""
        self._once_per_task = workflow.patched(VIEW_ONCE_PER_TASK)  # memoized per run: asked once, here
        self._local = 0  # local activities in flight
        self._moves = 0  # changes and local-activity starts and ends: the write waits until a pass adds none

    def set(self, key: Any, value: object) -> None:  # noqa: ANN401 - a typed SearchAttributeKey
        if self._values.get(key.name) == value:
            return
        self._values[key.name] = value
        self._pending[key.name] = key.value_set(value)
        self._moves += 1
        if self._flush_task is None:
            flush = self._flush_when_done() if self.once_per_task else self._flush_when_yielded()
            self._flush_task = asyncio.create_task(flush)

    @property
    def once_per_task(self) -> bool:
        """This run took `VIEW_ONCE_PER_TASK`: the kit's waits then go straight on when their condition already
        holds, since a yield between two steps of one task is a pass in which the view could write early."""
        return self._once_per_task

    @contextmanager
    def local_activity(self) -> Iterator[None]:
        """Held by `workflows.calls.call_local` while a local activity of this run is in flight."""
        self._local += 1
        self._moves += 1
        try:
            yield
        finally:
            self._local -= 1
            self._moves += 1

    def show(self, shown: Shown, *, open_cases: int, breached: bool) -> None:
        self.set(names.STAGE, shown.stage)
        if shown.skus:
            self.set(names.SKUS, sorted(set(shown.skus)))
        if shown.location_ids:
            self.set(names.LOCATION_IDS, sorted(set(shown.location_ids)))
        self.set(names.OPEN_EXCEPTIONS, open_cases)
        self.set(names.SLA_BREACHED, breached)
        if shown.details != self._details:
            self._details = shown.details
            workflow.set_current_details(shown.details)

    def flush(self) -> None:
        """Write what is collected now (before the run completes or continues as new)."""
        if self._pending:
            workflow.upsert_search_attributes(list(self._pending.values()))
            self._pending.clear()

    async def _flush_when_done(self) -> None:
        """Write once no local activity is in flight and a whole pass of the event loop moved nothing: what the
        task still does after its local activities joins the upsert. Only the run's own steps decide when (no
        clock, no history length), so a replay writes at the same point as the run did."""
        try:
            while True:
                await workflow.wait_condition(lambda: self._local == 0)
                moves = self._moves
                await workflow.wait_condition(lambda: True)  # after everything else this pass runs
                if self._moves == moves and self._local == 0:
                    break
        finally:
            self._flush_task = None  # also when cancelled: the next change starts a new wait
        self.flush()

    async def _flush_when_yielded(self) -> None:
        """Release 3.1's write, for runs started before `VIEW_ONCE_PER_TASK`: when the workflow first yields."""
        self._flush_task = None
        self.flush()


class ProcessLog:
    """`workflow.logger` bound once with the business key, so every line a process writes carries it.

    `workflow.logger` is replay-safe and adds the workflow and run IDs itself; the structlog formatter lifts
    `business_key` and the keyword fields into the JSON line.
    """

    def __init__(self, business_key: str) -> None:
        self.business_key = business_key

    def _log(self, level: int, event: str, fields: dict[str, object]) -> None:
        workflow.logger.log(level, event, extra={"business_key": self.business_key, "fields": fields})

    def info(self, event: str, **fields: object) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: object) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, **fields: object) -> None:
        self._log(logging.ERROR, event, fields)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A small markdown table for the current details."""
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)

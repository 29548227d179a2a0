"""The one wiring every release-3 process workflow is built on (docs/architecture.md, "A process").

`Process` gives each process the same parts, built the same way in `__init__`: an `Inbox` that holds and
de-duplicates its events, a `ProcessView` (search attributes and current details), a `ProcessLog` bound to the
business key, and `ProcessCases` (SLA clocks and exception cases). A process describes itself in `shown()`;
`refresh()` is the one way its view is brought up to date. `movement()` builds its ledger movements with keys
`{workflow ID}:{step}`; `checkpoint()` continues it as new when its history grows long; `close()` is its last step.
"""
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import ClassVar

from pydantic import BaseModel
from temporalio import workflow

from domain.events import Event, EventType
from domain.inventory import MovementKind, MovementLine, MovementRequest
from domain.late import ClosedProcess
from domain.process import ProcessInput

with workflow.unsafe.imports_passed_through():
    from activities.routing import ClosingInput, RoutingActivities
    from workflows.calls import call, call_local
    from workflows.parts import Inbox, ProcessLog, ProcessView, Shown, markdown_table
    from workflows.sla import ProcessCases

# The patch that lets a process waiting for its opening event continue as new (see `Process.wait_to_open`).
OPENING_CHECKPOINT = "opening-checkpoint"

__all__ = ["Inbox", "Process", "ProcessLog", "ProcessView", "Shown", "markdown_table"]


class Process:
    """The base of every release-3 process workflow: its parts, its view, its movements, its end.

    A subclass sets `process_type` (its workflow type), calls `super().__init__(input)` first thing after the
    release patch, and implements `shown()`. It calls `refresh()` after it changes what `shown()` reads.
    """

    process_type: ClassVar[str]

    def __init__(self, input: ProcessInput) -> None:
        info = workflow.info()
        self.input = input
        self.policy = input.policy
        self.workflow_id = info.workflow_id
        self.inbox = Inbox(input.pending, input.seen_event_ids)
        self.log = ProcessLog(input.business_key)
        self.view = ProcessView()
        self.inbox.eager = self.view.once_per_task
        self.cases = ProcessCases(process_type=self.process_type, business_key=input.business_key,
                                  channel=input.channel, policy=input.policy.sla, view=self.view, inbox=self.inbox,
                                  log=self.log, carried=input.carried_cases)

    def shown(self) -> Shown:
        raise NotImplementedError

    def refresh(self) -> None:
        """Bring the view up to date with `shown()` and the cases (one upsert at the end of the task)."""
        self.view.show(self.shown(), open_cases=self.cases.open_count, breached=self.cases.sla_breached)

    def movement(self, step: str, kind: MovementKind, lines: Sequence[MovementLine] | Mapping[tuple[str, str], int],
                 reason: str, *, reference: str | None = None, reason_code: str | None = None) -> MovementRequest:
        """A ledger movement keyed `{workflow ID}:{step}` (a retry or a replay posts it once). `lines` are
        movement lines, or units by (sku, location) merged into one line each; an ADJUST needs its `reason_code`."""
        if isinstance(lines, Mapping):
            lines = [MovementLine(sku=sku, location_id=location, quantity=qty)
                     for (sku, location), qty in sorted(lines.items()) if qty]
        info = workflow.info()
        return MovementRequest(key=f"{self.workflow_id}:{step}", kind=kind, reason=reason, workflow_id=self.workflow_id,
                               run_id=info.run_id, reference=reference or self.input.business_key, lines=list(lines),
                               reason_code=reason_code)

    def history_long(self) -> bool:
        """The history has `continue_as_new_after` events, or Temporal suggests continuing as new (a wait that
        should checkpoint wakes on this)."""
        info = workflow.info()
        return info.is_continue_as_new_suggested() or \
            info.get_current_history_length() >= self.policy.continue_as_new_after

    async def checkpoint(self, resume: BaseModel, *, open_until: datetime | None = None) -> None:
        """Continue as new when the history is long (`history_long()`), once no handler runs and the cases are
        drained. `resume` is the process's own state; the next run gets it back in `input.resume`, with the held
        events, the seen event IDs, the SLA clocks and cases, and `open_until` (set by `wait_to_open`)."""
        if not self.history_long():
            return
        info = workflow.info()
        await self._until_quiet()
        self.refresh()
        self.view.flush()
        self.log.info("continuing as new", history_length=info.get_current_history_length(),
                      held=len(self.inbox.pending))
        workflow.continue_as_new(self.input.model_copy(update={
            "pending": list(self.inbox.pending), "seen_event_ids": sorted(self.inbox.seen_ids),
            "carried_cases": self.cases.carry(), "resume": resume.model_dump(mode="json"), "open_until": open_until,
        }))

    async def wait_to_open(self, ready: Callable[[], bool], *, resume: BaseModel, summary: str) -> bool:
        """Wait until `ready()` (the opening event is here), up to the policy's `open_timeout` from the first
        run's start; False if the deadline passed. A process that early events started can be sent any number
        of them before it opens: this wait continues as new when its history grows long, carrying the deadline
        (`input.open_until`), so neither the history nor the wait grows with the flood.

        Deploy-safe (docs/versioning.md): a run that is ready at once, or that began this wait before the
        `OPENING_CHECKPOINT` patch, waits exactly as release 3 did (one wait, one timer); only a run that really
        waits asks the patch, so an order opened by its own order.placed records no marker."""
        if ready() and self.view.once_per_task:
            return True  # the wait below would start and cancel its timer in this task: no command either way
        deadline = self.input.open_until or workflow.now() + self.policy.open_timeout
        if ready() or not workflow.patched(OPENING_CHECKPOINT):
            # release 3's one wait: an unpatched run is a first run (its timer is the whole open_timeout), and a
            # ready one returns at once, even a next run whose carried deadline has just passed
            try:
                await workflow.wait_condition(ready, timeout=self.policy.open_timeout, timeout_summary=summary)
            except TimeoutError:
                return False
            return True
        while not ready():
            left = deadline - workflow.now()
            if left <= timedelta(0):
                return False
            try:
                await workflow.wait_condition(lambda: ready() or self.history_long(), timeout=left,
                                              timeout_summary=summary)
            except TimeoutError:
                return False
            await self.checkpoint(resume, open_until=deadline)  # continues as new unless it woke on ready()
        return True

    async def opening(self, type: EventType, *, resume: BaseModel) -> Event | None:
        """Wait for the event that opens the process (`wait_to_open`), then take it; None if it never came (the
        process was started by an early event and ends unopened)."""
        if not await self.wait_to_open(lambda: self.inbox.has(type), resume=resume, summary=f"waiting for {type}"):
            return None
        return self.inbox.take(type)

    async def _until_quiet(self) -> None:
        """Wait until no handler runs and every case send is done, both at once: an update may start while the
        sends drain, and continuing as new (or closing) under a running update would cut it off halfway."""
        while True:
            if self.view.once_per_task and workflow.all_handlers_finished() and self.cases.quiet:
                return  # nothing to wait for: go on in this pass (ProcessView.once_per_task)
            await workflow.wait_condition(workflow.all_handlers_finished)
            await self.cases.drain()
            if workflow.all_handlers_finished():
                return

    async def close(self, outcome: str, stage: str, state: BaseModel, *, hand_over: Sequence[Event] = (),
                    local: bool = False) -> None:
        """The last step: wait for running handlers and case sends, then one activity enters the process in the
        registry (its business key never opens a second process; the read API answers for it after Temporal's
        retention), hands `hand_over` on, and sends every event still held unapplied to the late-event path.

        `local`: run it as a local activity, for a process whose last task does other local work (it is then
        in that task's one action); the closing activity is idempotent (registry write-once, events by ID)."""
        await self._until_quiet()
        self.refresh()
        self.view.flush()
        info = workflow.info()
        closed = ClosedProcess(workflow_id=self.workflow_id, run_id=info.run_id, workflow_type=self.process_type,
                               business_key=self.input.business_key, channel=self.input.channel, outcome=outcome,
                               stage=stage, closed_at=workflow.now(), state=state.model_dump(mode="json"))
        unapplied = list(self.inbox.pending)
        await (call_local if local else call)(
            RoutingActivities.close_process,
            ClosingInput(closed=closed, hand_over=list(hand_over), unapplied=unapplied),
            summary=f"close {self.process_type} {self.input.business_key} ({outcome})")
        # An event signalled while the close ran (before its registry entry was in, so the door still found the
        # process open) follows the others to the late-event path: nothing that reached a process is dropped.
        handed = len(unapplied)
        while handed < len(self.inbox.pending):
            event = self.inbox.pending[handed]
            await call(RoutingActivities.forward_event, event, summary=f"unapplied {event.type} to the late-event path")
            handed += 1
        self.log.info("process ended", outcome=outcome, stage=stage)

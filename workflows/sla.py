"""The one SLA-clock and exception-case mechanism every process uses (docs/sla.md has the why).

    self.cases.start_clock(SlaKind.TRANSFER_SHIP_OVERDUE)               # the clock starts now
    event = await self.inbox.next(EventType.TRANSFER_SHIPPED)           # the process waits as usual
    self.cases.stop_clock(SlaKind.TRANSFER_SHIP_OVERDUE, by=event.type)  # resolves the case if it breached
    self.cases.open_case(CaseKind.RECEIPT_VARIANCE, summary=..., details={...})
    if await self.cases.wait(SlaKind.PICKUP_EXPIRED, lambda: ...): ...  # breaches that act
    await self.cases.drain()                                            # before the run ends

- One durable timer per process, for the earliest running deadline (release 3): a watcher task re-arms it only
  when a deadline comes earlier than the armed one, so three running clocks cost one timer, not three. When the
  earliest deadline moves later (its clock stopped) the armed timer stays: it fires, finds nothing due and arms
  the next then, so a process that ends before it (an order shipped within the pick SLA) never pays a second.
- A breach never fails the process: it opens an `ExceptionCase` child (ID exception:{process workflow ID}:{kind},
  parent-close ABANDON, ID reuse rejected: at most one case per kind per process, adopted if it exists), and the
  process keeps waiting for the real event, whose `stop_clock` signals the case to resolve itself.
- Ops resolve a case on the case itself; it signals `case_resolved` back, so OpenExceptions stays true.
- `carry()` / `carried=` take the clocks and cases across continue-as-new.
"""
import asyncio
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from client import names

with workflow.unsafe.imports_passed_through():
    from domain.cases import (
        CarriedCases,
        CarriedClock,
        CaseRef,
        CaseResolved,
        CaseStatus,
        ExceptionCaseInput,
        Lineage,
        ResolveRequest,
    )
    from domain.ids import exception_workflow_id
    from domain.sla import CaseKind, Severity, SlaKind, SlaPolicy
    from workflows.exception_case import PROCESS_SIGNAL, ExceptionCase


def due_text(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M")


class _Clock:
    def __init__(self, kind: SlaKind, deadline: datetime | None) -> None:
        self.kind = kind
        self.deadline = deadline
        self.stopped = False
        self.stopped_by: str | None = None
        self.breached = False

    @property
    def running(self) -> bool:
        return self.deadline is not None and not self.stopped and not self.breached


class _Case:
    def __init__(self, ref: CaseRef) -> None:
        self.ref = ref
        self.settled = False  # the child start has been answered (started, adopted or failed)
        self.exists = False  # a case workflow with this ID exists (started now or earlier)
        self.handle: workflow.ChildWorkflowHandle[Any, Any] | None = None  # when this run started it


class ProcessCases:
    def __init__(
        self,
        *,
        process_type: str,
        business_key: str,
        channel: str | None,
        policy: SlaPolicy,
        view: Any,  # workflows.process.ProcessView (that module builds this one)
        inbox: Any = None,  # workflows.process.Inbox
        log: Any = None,  # workflows.process.ProcessLog
        carried: CarriedCases | None = None,
    ) -> None:
        info = workflow.info()
        self.process_type = process_type
        self.process_workflow_id = info.workflow_id
        self.process_run_id = info.run_id
        self.business_key = business_key
        self.channel = channel
        self.policy = policy
        self.view = view
        self.inbox = inbox
        self.log = log
        self._location_ids: list[str] = []
        self._skus: list[str] = []
        self._clocks: dict[SlaKind, _Clock] = {}
        self._cases: dict[CaseKind, _Case] = {}
        self._earliest: datetime | None = None  # the earliest running deadline (the timer is armed at or before it)
        self._watcher: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()  # held so the loop never drops a running send
        workflow.set_signal_handler(PROCESS_SIGNAL, self._on_case_resolved)
        for c in (carried.clocks if carried else []):
            clock = _Clock(c.kind, c.deadline)
            clock.stopped, clock.breached = c.stopped, c.breached
            self._clocks[c.kind] = clock
        for ref in (carried.cases if carried else []):
            case = _Case(ref)
            case.settled = case.exists = True  # opened by an earlier run: signalled by ID from now on
            self._cases[ref.kind] = case
        self._rearm()  # a continued run: the one timer for the carried clocks still running

    def scope(self, *, location_ids: Sequence[str] = (), skus: Sequence[str] = ()) -> None:
        """What the process touches, carried onto every case it opens (for ops' list queries)."""
        self._location_ids = sorted(set(self._location_ids) | set(location_ids))
        self._skus = sorted(set(self._skus) | set(skus))

    def carry(self) -> CarriedCases:
        """The clocks and cases, for the next run of this process (continue-as-new)."""
        return CarriedCases(
            clocks=[CarriedClock(kind=c.kind, deadline=c.deadline, stopped=c.stopped, breached=c.breached)
                    for c in self._clocks.values()],
            cases=[c.ref.model_copy() for c in self._cases.values()])

    # ---- clocks ------------------------------------------------------------------------------------------

    def start_clock(self, kind: SlaKind, *, since: datetime | None = None) -> None:
        """Start the named clock (deadline from the policy); starting a running or stopped clock again is a no-op."""
        if kind in self._clocks:
            return
        self._clocks[kind] = _Clock(kind, (since or workflow.now()) + self.policy.deadline(kind))
        self._rearm()

    def restart_clock(self, kind: SlaKind, *, since: datetime | None = None) -> None:
        """Start a clock that was stopped again (a return's units await inspection again after a later parcel);
        a running clock keeps its deadline. Still at most one case per kind per process."""
        clock = self._clocks.get(kind)
        if clock is not None and not clock.stopped:
            return
        self._clocks.pop(kind, None)
        self.start_clock(kind, since=since)

    def stop_clock(self, kind: SlaKind, *, by: str) -> None:
        """The awaited event came: the clock stops, or the case resolves if the clock had breached.

        Stopping a clock that never started marks it stopped, so a later `start_clock` of it is a no-op (the
        event came early)."""
        clock = self._clocks.setdefault(kind, _Clock(kind, None))
        if clock.stopped:
            return
        clock.stopped = True
        clock.stopped_by = str(by)
        if clock.breached:
            self.log.info("SLA met late", kind=str(kind), by=str(by))
            self._resolve(CaseKind(kind.value), note=f"late event {by} arrived")
        self._rearm()

    def stop_all(self, *, by: str) -> None:
        """Stop every running clock (the process ends another way, e.g. cancelled), resolving breached ones."""
        for kind in list(self._clocks):
            self.stop_clock(kind, by=by)

    def breached(self, kind: SlaKind) -> bool:
        clock = self._clocks.get(kind)
        return bool(clock and clock.breached)

    async def wait(self, kind: SlaKind, condition: Callable[[], bool]) -> bool:
        """Wait for `condition` or the breach of `kind`'s clock: True if the condition holds (it wins a tie),
        False if the clock breached first. For breaches that act (pickup_expired, return_not_received)."""
        if not (self.view.once_per_task and condition()):
            await workflow.wait_condition(lambda: condition() or self.breached(kind))
        return condition()

    def _next_deadline(self) -> datetime | None:
        running = [c.deadline for c in self._clocks.values() if c.running and c.deadline is not None]
        return min(running) if running else None

    def _rearm(self) -> None:
        """Point the one timer at the earliest running deadline: a new timer only when it comes earlier."""
        earliest = self._next_deadline()
        if earliest == self._earliest and (self._watcher is not None or earliest is None):
            return
        self._earliest = earliest
        if self._watcher is None and earliest is not None:
            self._watcher = asyncio.create_task(self._watch())
            self._keep(self._watcher)

    async def _watch(self) -> None:
        while self._earliest is not None:
            armed = self._earliest
            remaining = armed - workflow.now()
            if remaining > timedelta(0):
                due = [c.kind for c in self._clocks.values() if c.running and c.deadline == armed]
                try:
                    await workflow.wait_condition(
                        lambda armed=armed: self._earliest is not None and self._earliest < armed, timeout=remaining,
                        timeout_summary=f"SLA {', '.join(str(k) for k in due)}, due {due_text(armed)}")
                    continue  # re-armed: a deadline came earlier
                except TimeoutError:
                    pass
            now = workflow.now()
            for clock in [c for c in self._clocks.values() if c.running and c.deadline and c.deadline <= now]:
                self._breach(clock, now)
            self._earliest = self._next_deadline()
        self._watcher = None

    def _breach(self, clock: _Clock, breached_at: datetime) -> None:
        assert clock.deadline is not None
        clock.breached = True
        self.log.warning("SLA breached", kind=str(clock.kind), deadline=clock.deadline.isoformat(),
                         process_type=self.process_type)
        self._open(
            CaseKind(clock.kind.value),
            summary=f"SLA {clock.kind} breached: {self.process_type} {self.business_key} was due "
                    f"{due_text(clock.deadline)}",
            details={"deadline": clock.deadline.isoformat(), "breached_at": breached_at.isoformat()},
            severity=Severity.MEDIUM,
            deadline=clock.deadline,
            breached_at=breached_at,
        )

    # ---- cases -----------------------------------------------------------------------------------------

    def open_case(self, kind: CaseKind, *, summary: str, details: dict[str, str] | None = None,
                  severity: Severity = Severity.MEDIUM) -> None:
        """Open a case an event raised (short_pick, receipt_variance, settlement_mismatch, over_capture).
        At most one case per kind per process."""
        self._open(kind, summary=summary, details=details or {}, severity=severity, deadline=None, breached_at=None)

    def resolve_case(self, kind: CaseKind, *, note: str) -> None:
        """The process settled the matter itself (e.g. a variance written off): resolve its case."""
        self._resolve(kind, note=note)

    @property
    def open_count(self) -> int:
        return sum(1 for c in self._cases.values() if c.ref.status == CaseStatus.OPEN)

    @property
    def sla_breached(self) -> bool:
        """True once any clock of this process breached (it stays true: the process did miss a deadline)."""
        return any(c.breached for c in self._clocks.values())

    def refs(self) -> list[CaseRef]:
        return [c.ref.model_copy() for c in self._cases.values()]

    @property
    def quiet(self) -> bool:
        """No case send or case close is outstanding (`drain` would return at once)."""
        return self._in_flight == 0

    async def drain(self) -> None:
        """Wait until every case start and resolve signal this process issued has been sent, and every case this
        run started and then resolved has closed."""
        await workflow.wait_condition(lambda: self._in_flight == 0)

    # ---- internals --------------------------------------------------------------------------------------

    def _open(self, kind: CaseKind, *, summary: str, details: dict[str, str], severity: Severity,
              deadline: datetime | None, breached_at: datetime | None) -> None:
        if kind in self._cases:
            self.log.info("exception case already open for this kind", kind=str(kind))
            return
        now = workflow.now()
        exception_id = exception_workflow_id(self.process_workflow_id, str(kind))
        case = _Case(CaseRef(exception_id=exception_id, kind=kind, status=CaseStatus.OPEN, opened_at=now,
                             deadline=deadline, summary=summary, breached_at=breached_at))
        self._cases[kind] = case
        self._refresh_view()
        case_input = ExceptionCaseInput(
            exception_id=exception_id,
            kind=kind,
            business_key=self.business_key,
            channel=self.channel,
            location_ids=list(self._location_ids),
            skus=list(self._skus),
            severity=severity,
            summary=summary,
            details=dict(details),
            lineage=Lineage(
                process_workflow_id=self.process_workflow_id,
                process_run_id=self.process_run_id,
                process_type=self.process_type,
                events_seen=list(self.inbox.applied_types) if self.inbox else [],
                deadline=deadline,
                breached_at=breached_at,
            ),
            escalate_every=self.policy.escalate_every,
            opened_at=now,
        )
        self.log.warning("exception case opened", kind=str(kind), exception_id=exception_id, summary=summary)
        self._spawn(self._start_case(case, case_input))

    async def _start_case(self, case: _Case, case_input: ExceptionCaseInput) -> None:
        try:
            case.handle = await workflow.start_child_workflow(
                ExceptionCase.run,
                case_input,
                id=case_input.exception_id,
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                static_summary=f"{case_input.kind} case: {case_input.business_key}"[:200],
                static_details=case_input.summary,
            )
            case.exists = True
        except WorkflowAlreadyStartedError:
            # An earlier run of this process opened it: adopt it, never open a second one.
            case.exists = True
            self.log.info("exception case exists already, adopted", exception_id=case_input.exception_id)
        except Exception as err:  # a case that cannot start must not fail the process
            self.log.error("exception case not started", exception_id=case_input.exception_id, error=str(err))
        finally:
            case.settled = True

    def _resolve(self, kind: CaseKind, *, note: str) -> None:
        case = self._cases.get(kind)
        if case is None or case.ref.status == CaseStatus.RESOLVED:
            return
        case.ref.status = CaseStatus.RESOLVED
        case.ref.resolved_by = "process"
        case.ref.resolution_note = note
        self._refresh_view()
        self._spawn(self._signal_resolve(case, ResolveRequest(note=note, resolved_by="process")))

    async def _signal_resolve(self, case: _Case, request: ResolveRequest) -> None:
        await workflow.wait_condition(lambda: case.settled)
        if not case.exists:
            return
        try:
            if case.handle is not None:
                await case.handle.signal("resolve", request)
                # Wait for the case to close (resolution recorded): the process never completes before a case
                # it resolved, so `drain()` means the register is current too.
                await case.handle
            else:
                await workflow.get_external_workflow_handle(case.ref.exception_id).signal("resolve", request)
        except Exception as err:  # the case completed already (ops resolved it first)
            self.log.info("exception case not signalled", exception_id=case.ref.exception_id, error=str(err))

    def _on_case_resolved(self, notice: CaseResolved) -> None:
        case = self._cases.get(notice.kind)
        if case is None or case.ref.exception_id != notice.exception_id or case.ref.status == CaseStatus.RESOLVED:
            return
        case.ref.status = CaseStatus.RESOLVED
        case.ref.resolved_by = notice.resolution.resolved_by
        case.ref.resolution_note = notice.resolution.note
        self.log.info("exception case resolved by ops", kind=str(notice.kind), exception_id=notice.exception_id,
                      resolved_by=notice.resolution.resolved_by)
        self._refresh_view()

    def _refresh_view(self) -> None:
        self.view.set(names.OPEN_EXCEPTIONS, self.open_count)
        self.view.set(names.SLA_BREACHED, self.sla_breached)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self._in_flight += 1

        async def tracked() -> None:
            try:
                await work
            finally:
                self._in_flight -= 1

        self._keep(asyncio.create_task(tracked()))

    def _keep(self, task: "asyncio.Task[None]") -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

"""ExceptionCase: one owned, visible, escalating case per missed deadline or event that does not add up.

Why a workflow of its own (and not a flag on the process): a case must outlive the process that raised it
(parent-close ABANDON), escalate on its own clock while nobody looks, and be resolvable by ops through a
validated Temporal update. The workflow is the source of truth; every change (open, each escalation,
resolution) is also written to PostgreSQL by `CaseActivities.record_case`, so lists and reports
(`GET /exceptions`) never have to scan Temporal. The register upserts by exception_id and never moves a
resolved case back to open, so retried or late writes are harmless.

Escalations follow a fixed schedule from `opened_at` (opened_at + n * escalate_every) rather than "every
interval after the last one", so a worker outage or a continue-as-new does not drift the schedule. The
workflow completes when resolved, returning its final snapshot.
"""
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.cases import CaseActivities
    from client import names as common
    from domain.cases import (
        CaseResolved,
        CaseSnapshot,
        CaseStatus,
        ExceptionCaseInput,
        Resolution,
        ResolveRequest,
    )
    from domain.sla import Severity
    from workflows.calls import call
    from workflows.parts import ProcessLog, markdown_table

# The signal a process's ProcessCases listens on (see workflows/sla.py).
PROCESS_SIGNAL = "case_resolved"


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M") if at else "-"


@workflow.defn(name="ExceptionCase")
class ExceptionCase:
    @workflow.init
    def __init__(self, input: ExceptionCaseInput) -> None:
        self.input = input
        self.severity: Severity = input.severity
        self.escalations = input.escalations
        self.last_escalated_at = input.last_escalated_at
        self.resolution: Resolution | None = None
        self.resolution_recorded = False
        self.log = ProcessLog(input.business_key)

    # ---- ops and the process -------------------------------------------------------------------------

    @workflow.update(name="resolve", description="Ops resolves the case with a note (ResolveRequest) -> CaseSnapshot.")
    async def resolve(self, request: ResolveRequest) -> CaseSnapshot:
        if self.resolution is not None:  # two updates validated at once: only the first resolves
            raise ApplicationError(self._already_resolved(), type="CaseAlreadyResolved", non_retryable=True)
        self._resolve(request.resolved_by or "ops", request.note.strip())
        # Answer once the register says so too, so a list right after the resolve agrees with it.
        await workflow.wait_condition(lambda: self.resolution_recorded)
        return self.snapshot()

    @resolve.validator
    def validate_resolve(self, request: ResolveRequest) -> None:
        if self.resolution is not None:
            raise ValueError(self._already_resolved())
        if not request.note or not request.note.strip():
            raise ValueError(f"a note is required to resolve case {self.input.exception_id}: say what was done")

    @workflow.signal(name="resolve", description="The process resolves the case: the awaited event arrived.")
    def resolve_by_process(self, request: ResolveRequest) -> None:
        if self.resolution is not None:
            return  # resolved already (ops was faster): nothing to do
        self._resolve(request.resolved_by or "process", request.note.strip() or "resolved by the process")

    @workflow.query(name="state", description="The case as ops sees it (CaseSnapshot).")
    def state(self) -> CaseSnapshot:
        return self.snapshot()

    # ---- the case's life ----------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: ExceptionCaseInput) -> CaseSnapshot:
        self._publish()
        if workflow.info().continued_run_id is None:
            self.log.warning("exception case opened", exception_id=input.exception_id, kind=str(input.kind),
                             severity=str(self.severity), summary=input.summary)
        await self._record()
        escalated_this_run = 0
        while self.resolution is None:
            due = input.opened_at + input.escalate_every * (self.escalations + 1)
            if await self._wait_resolved_until(due):
                break
            self._escalate()
            await self._record()
            escalated_this_run += 1
            if escalated_this_run >= input.escalations_per_run:
                # A resolve update in flight waits for this loop to record it: never continue-as-new under it.
                await workflow.wait_condition(lambda: self.resolution is not None or workflow.all_handlers_finished())
                if self.resolution is None:
                    workflow.continue_as_new(self._carry())
        await self._record()
        self.resolution_recorded = True
        await self._notify_process()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.snapshot()

    async def _wait_resolved_until(self, due: datetime) -> bool:
        """True if resolved before `due`; the timer says what happens when it fires."""
        remaining = due - workflow.now()
        if remaining > timedelta(0):
            try:
                await workflow.wait_condition(
                    lambda: self.resolution is not None,
                    timeout=remaining,
                    timeout_summary=f"escalate {self.input.kind} to {self.severity.escalated()}, at {_when(due)}",
                )
            except TimeoutError:
                pass
        return self.resolution is not None

    def _escalate(self) -> None:
        before = self.severity
        self.severity = before.escalated()
        self.escalations += 1
        self.last_escalated_at = workflow.now()
        self.log.warning("exception case escalated", exception_id=self.input.exception_id,
                         kind=str(self.input.kind), severity=str(self.severity), previous=str(before),
                         escalations=self.escalations)
        self._publish()

    def _resolve(self, by: str, note: str) -> None:
        self.resolution = Resolution(resolved_at=workflow.now(), resolved_by=by, note=note)
        self.log.info("exception case resolved", exception_id=self.input.exception_id,
                      kind=str(self.input.kind), resolved_by=by, note=note)
        self._publish()

    def _already_resolved(self) -> str:
        r = self.resolution
        assert r is not None
        return (f"case {self.input.exception_id} is already resolved (by {r.resolved_by} at "
                f"{r.resolved_at.isoformat()}: {r.note})")

    async def _record(self) -> None:
        await call(CaseActivities.record_case, self.snapshot(),
                   summary=f"record {self.input.kind} case: {self.snapshot().status}, {self.severity}")

    async def _notify_process(self) -> None:
        """Tell the process when ops resolved its case; the process resolved it itself otherwise."""
        assert self.resolution is not None
        if self.resolution.resolved_by == "process":
            return
        notice = CaseResolved(exception_id=self.input.exception_id, kind=self.input.kind,
                              resolution=self.resolution)
        try:
            await workflow.get_external_workflow_handle(self.input.lineage.process_workflow_id).signal(
                PROCESS_SIGNAL, notice)
        except Exception as err:  # the process has completed: nothing left to update there
            self.log.info("process not signalled", exception_id=self.input.exception_id, error=str(err))

    def _carry(self) -> ExceptionCaseInput:
        return self.input.model_copy(update={
            "severity": self.severity, "escalations": self.escalations,
            "last_escalated_at": self.last_escalated_at,
        })

    def _publish(self) -> None:
        """Search attributes and current details, so the Temporal UI and visibility queries show the case."""
        i = self.input
        resolved = self.resolution is not None
        updates = [
            common.BUSINESS_KEY.value_set(i.business_key),
            common.STAGE.value_set("resolved" if resolved else "open"),
            common.SLA_BREACHED.value_set(i.lineage.breached_at is not None),
            common.OPEN_EXCEPTIONS.value_set(0 if resolved else 1),
        ]
        if i.channel:
            updates.append(common.CHANNEL.value_set(i.channel))
        if i.location_ids:
            updates.append(common.LOCATION_IDS.value_set(sorted(set(i.location_ids))))
        if i.skus:
            updates.append(common.SKUS.value_set(sorted(set(i.skus))))
        workflow.upsert_search_attributes(updates)
        rows = [
            ("kind", i.kind), ("status", "resolved" if resolved else "open"), ("severity", self.severity),
            ("business key", i.business_key), ("process", i.lineage.process_workflow_id),
            ("deadline", _when(i.lineage.deadline)), ("breached", _when(i.lineage.breached_at)),
            ("escalations", self.escalations), ("last escalated", _when(self.last_escalated_at)),
        ]
        if self.resolution:
            rows.append(("resolved", f"{_when(self.resolution.resolved_at)} by {self.resolution.resolved_by}: "
                                     f"{self.resolution.note}"))
        rows += [(k, v) for k, v in i.details.items()]
        workflow.set_current_details(f"**{i.summary}**\n\n" + markdown_table(("", ""), rows))

    def snapshot(self) -> CaseSnapshot:
        i = self.input
        return CaseSnapshot(
            exception_id=i.exception_id,
            kind=i.kind,
            status=CaseStatus.RESOLVED if self.resolution else CaseStatus.OPEN,
            severity=self.severity,
            business_key=i.business_key,
            channel=i.channel,
            location_ids=list(i.location_ids),
            skus=list(i.skus),
            summary=i.summary,
            details=dict(i.details),
            process_workflow_id=i.lineage.process_workflow_id,
            process_run_id=i.lineage.process_run_id,
            process_type=i.lineage.process_type,
            events_seen=list(i.lineage.events_seen),
            opened_at=i.opened_at,
            deadline=i.lineage.deadline,
            breached_at=i.lineage.breached_at,
            escalations=self.escalations,
            last_escalated_at=self.last_escalated_at,
            resolution=self.resolution,
        )

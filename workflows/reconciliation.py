"""Reconciliation: started by the Temporal Schedule `reconciliation` (see client/schedules.py).

Thin: three read-only activities run side by side (the invariant checker with per-entity inventory figures,
orphaned holdings, stale processes), the pure `domain.reconciliation.build_report` turns what they found into
discrepancies, each discrepancy opens an `ExceptionCase`, the report is stored for `GET
/reconciliation/latest`, and returned.

Cases: one per discrepancy, with the workflow ID `exception:reconciliation:{discrepancy key}` (keys like
`orphan:{workflow ID}`, `stale:{workflow ID}`, `drift:{legal entity}`, `check:{check name}`). The ID is the
de-duplication: while that case is open, the next run's start of it fails with "already started" and is
recorded as `already_open`, so a discrepancy that persists keeps ONE case (which escalates on its own clock).
Once ops resolved a case (it completes), a discrepancy that is still there opens a fresh case under the same ID
on the next run: it was not fixed. A case whose discrepancy is gone is resolved by the run that no longer finds
it (`resolved_by="reconciliation"`). At most `max_cases` are started per run; every discrepancy is in the report.

Cases are started as children with parent-close ABANDON (like ProcessCases' SLA cases): they outlive the run.
"""
import asyncio

from temporalio import workflow
from temporalio.exceptions import WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from activities.reconciliation import (
        STALE_LIMIT,
        InventoryQuery,
        OpenCasesQuery,
        OrphanQuery,
        ReconciliationActivities,
    )
    from domain.cases import ExceptionCaseInput, Lineage, ResolveRequest
    from domain.reconciliation import (
        WORKFLOW_TYPE,
        CaseOutcome,
        Discrepancy,
        DiscrepancyKind,
        ReconciliationInput,
        ReconciliationReport,
        StaleQuery,
        build_report,
        case_id,
    )
    from domain.sla import CaseKind, Severity
    from workflows.calls import call
    from workflows.parts import ProcessLog, markdown_table
    from workflows.release_2.process import ProcessView  # its commands are unchanged in release 3

BUSINESS_KEY = "reconciliation"
SEVERITY = {
    DiscrepancyKind.CHECK_FAILED: Severity.CRITICAL,
    DiscrepancyKind.INVENTORY_DRIFT: Severity.HIGH,
    DiscrepancyKind.ORPHAN_HOLDING: Severity.HIGH,
    DiscrepancyKind.STALE_PROCESS: Severity.MEDIUM,
}


@workflow.defn(name=WORKFLOW_TYPE)
class Reconciliation:
    @workflow.init
    def __init__(self, input: ReconciliationInput) -> None:
        self.input = input
        self.report: ReconciliationReport | None = None
        self.log = ProcessLog(BUSINESS_KEY)

    @workflow.query(name="state", description="The report so far (None until the checks have run).")
    def state(self) -> ReconciliationReport | None:
        return self.report

    @workflow.run
    async def run(self, input: ReconciliationInput) -> ReconciliationReport:
        self.view = ProcessView(BUSINESS_KEY, None)
        self.view.stage("checking")
        report = await self._check(input)
        self.report = report
        self.view.stage("opening_cases")
        await self._open_cases(report, input)
        if input.resolve_cleared:
            report.resolved_cases = await self._resolve_cleared(report)
        report.finished_at = workflow.now()
        await call(ReconciliationActivities.store_run, report, summary=f"store run: {self._verdict(report)}")
        self._publish(report)
        if report.ok:
            self.log.info("reconciliation clean", checks=len(report.checks))
        else:
            self.log.warning("reconciliation found discrepancies", discrepancies=len(report.discrepancies),
                             keys=[d.key for d in report.discrepancies][:20])
        return report

    async def _check(self, input: ReconciliationInput) -> ReconciliationReport:
        info = workflow.info()
        now = workflow.now()
        inventory, orphans, stale = await asyncio.gather(
            call(ReconciliationActivities.check_inventory, InventoryQuery(),
                 summary="invariant checker and inventory by legal entity"),
            call(ReconciliationActivities.find_orphans, OrphanQuery(),
                 summary="units reserved, picked or in transit without a running process"),
            call(ReconciliationActivities.find_stale_processes, StaleQuery(now=now, stale_after=input.stale_after),
                 summary="processes open past every deadline"),
        )
        self.complete = {"orphan": orphans.complete, "stale": stale.complete}
        report = build_report(when=now, workflow_id=info.workflow_id, run_id=info.run_id, inventory=inventory,
                              orphans=orphans.orphans, stale=stale.processes)
        if not orphans.complete:
            report.truncated.append(f"orphans: {len(orphans.orphans)} of {orphans.total} listed")
        if not stale.complete:
            report.truncated.append(f"stale processes: at most {len(input.stale_after)} x {STALE_LIMIT} listed")
        return report

    async def _open_cases(self, report: ReconciliationReport, input: ReconciliationInput) -> None:
        allowed = report.discrepancies[:input.max_cases] if input.open_cases else []
        for d in report.discrepancies:
            d.case = CaseOutcome.NOT_OPENED
        outcomes = await asyncio.gather(*(self._open_case(d, report) for d in allowed))
        for d, outcome in zip(allowed, outcomes, strict=True):
            d.case = outcome

    async def _open_case(self, d: Discrepancy, report: ReconciliationReport) -> CaseOutcome:
        now = workflow.now()
        case = ExceptionCaseInput(
            exception_id=d.case_id, kind=CaseKind.RECONCILIATION, business_key=d.business_key,
            location_ids=d.location_ids, skus=d.skus, severity=SEVERITY[d.kind], summary=d.summary,
            details={"discrepancy": d.key, "discrepancy_kind": str(d.kind), **d.details},
            lineage=Lineage(process_workflow_id=report.workflow_id, process_run_id=report.run_id,
                            process_type=WORKFLOW_TYPE),
            escalate_every=self.input.escalate_every, opened_at=now,
        )
        try:
            await workflow.start_child_workflow(
                "ExceptionCase", case, id=d.case_id,
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                static_summary=f"reconciliation case: {d.key}"[:200],
                static_details=d.summary,
            )
        except WorkflowAlreadyStartedError:
            return CaseOutcome.ALREADY_OPEN
        self.log.warning("reconciliation case opened", exception_id=d.case_id, kind=str(d.kind))
        return CaseOutcome.OPENED

    async def _resolve_cleared(self, report: ReconciliationReport) -> list[str]:
        """Resolve the open reconciliation cases whose discrepancy this run no longer finds."""
        open_ids = await call(ReconciliationActivities.open_reconciliation_cases, OpenCasesQuery(),
                              summary="open reconciliation cases")
        found = {d.case_id for d in report.discrepancies}
        cleared = [
            c for c in open_ids
            if c not in found and all(ok or not c.startswith(case_id(f"{kind}:")) for kind, ok in self.complete.items())
        ]

        async def resolve(case_id: str) -> str | None:
            note = f"no longer found by reconciliation run {report.workflow_id}"
            try:
                await workflow.get_external_workflow_handle(case_id).signal(
                    "resolve", ResolveRequest(note=note, resolved_by="reconciliation"))
            except Exception as err:  # noqa: BLE001 - closed meanwhile (ops resolved it): nothing to do
                self.log.info("case not signalled", exception_id=case_id, error=str(err))
                return None
            return case_id

        return [c for c in await asyncio.gather(*(resolve(c) for c in cleared)) if c]

    @staticmethod
    def _verdict(report: ReconciliationReport) -> str:
        return "clean" if report.ok else f"{len(report.discrepancies)} discrepancies"

    def _publish(self, report: ReconciliationReport) -> None:
        self.view.stage("clean" if report.ok else "discrepancies")
        opened_or_open = [d for d in report.discrepancies if d.case in (CaseOutcome.OPENED, CaseOutcome.ALREADY_OPEN)]
        self.view.exceptions(len(opened_or_open), False)
        self.view.locations([loc for d in report.discrepancies for loc in d.location_ids])
        self.view.skus([sku for d in report.discrepancies for sku in d.skus])
        checks = markdown_table(("check", "ok", "violations"),
                                [(c.name, "yes" if c.ok else "**no**", c.violations) for c in report.checks])
        entities = markdown_table(("legal entity", "units", "units at cost", "journal", "ok"),
                                  [(e.legal_entity, e.units, e.units_at_cost, e.journal_balance,
                                    "yes" if e.ok else "**no**") for e in report.entities])
        parts = [f"**Reconciliation: {self._verdict(report)}**", checks, entities]
        if report.discrepancies:
            parts.append(markdown_table(("discrepancy", "case", "summary"),
                                        [(d.key, d.case, d.summary) for d in report.discrepancies[:30]]))
        if report.resolved_cases:
            parts.append("Resolved (cleared): " + ", ".join(report.resolved_cases))
        self.view.details("\n\n".join(parts))

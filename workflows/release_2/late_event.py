"""LateEvent: an event that came after its process had ended (workflow ID `late:{event identity}`).

Started by the door's dispatch when the event's process is found closed (in the process registry, or by
Temporal refusing to start a finished business key again). It stores the event with its payload, takes goods
that physically moved into the ledger (domain.late.plan_goods: a late return parcel into pending_inspection, a
late transfer receipt into available, a parcel dispatched after the order ended out of it), and opens the
exception case that tells ops (`late_event`, or `shipped_after_cancel` for goods that left). A delivery
confirmation after the settlement closed is only stored. Its movements are keyed by this workflow's ID, so
one event is applied once whatever is retried.

It is a process like the others (BusinessKey, Stage, its case through ProcessCases), so ops find it under the
ended process's business key.
"""
from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.erp import ErpActivities
    from activities.registry import ClosedProcessQuery, RegistryActivities
    from domain.errors import ErrorType
    from domain.inventory import MovementRequest
    from domain.late import (
        LateAction,
        LateEventInput,
        LateEventOutcome,
        LateEventRecord,
        late_case_id,
        late_handling,
        plan_goods,
    )
    from workflows.release_2.calls import call, refusal_type
    from workflows.release_2.process import ProcessLog, ProcessView
    from workflows.release_2.sla import ProcessCases


# (release 2.0 implementation of LateEvent: its @workflow.defn is the entry in workflows/)
class LateEvent:
    @workflow.init
    def __init__(self, input: LateEventInput) -> None:
        self.input = input
        self.workflow_id = workflow.info().workflow_id
        self.view = ProcessView(input.business_key, input.channel)
        self.log = ProcessLog(input.business_key)
        self.cases = ProcessCases(process_type="LateEvent", business_key=input.business_key,
                                  channel=input.channel, policy=input.sla, view=self.view, log=self.log)
        self.stage = "storing"
        self.outcome: LateEventOutcome | None = None

    @workflow.query(name="state", description="The late event: its stage, and once handled what was done with it.")
    def state(self) -> dict:
        return {"workflow_id": self.workflow_id, "business_key": self.input.business_key, "stage": self.stage,
                "event_id": self.input.event.event_id, "event_type": str(self.input.event.type),
                "process_workflow_id": self.input.process_workflow_id,
                "outcome": self.outcome.model_dump(mode="json") if self.outcome else None,
                "exception_cases": [ref.model_dump(mode="json") for ref in self.cases.refs()]}

    @workflow.run
    async def run(self, input: LateEventInput) -> LateEventOutcome:
        event = input.event
        handling = late_handling(event.type)
        case_id = late_case_id(self.workflow_id, event.type)
        self._stage("storing")
        await call(RegistryActivities.record_late_event, LateEventRecord(
            event_id=event.event_id, process_workflow_id=input.process_workflow_id,
            late_workflow_id=self.workflow_id, type=str(event.type), source=event.source, action=handling.action,
            case_id=case_id, payload=event.model_dump(mode="json"), received_at=workflow.now(),
        ), summary=f"store late {event.type} for {input.process_workflow_id}")
        outcome = LateEventOutcome(workflow_id=self.workflow_id, stage=str(handling.action), action=handling.action,
                                   case_id=case_id)
        self.outcome = outcome
        details = {"event_id": event.event_id, "event_type": str(event.type), "source": event.source,
                   "process_workflow_id": input.process_workflow_id, "process_type": input.process_type}
        if handling.action is LateAction.APPLY:
            self._stage("applying")
            await self._apply(outcome)
            details["movements"] = ", ".join(outcome.movement_keys) or "none"
            if outcome.unresolved:
                details["not applied"] = "; ".join(outcome.unresolved)
        if handling.case_kind is not None:
            self.cases.open_case(handling.case_kind, details=details,
                                 summary=f"late {event.type} for ended {input.process_type} "
                                         f"{input.business_key}: {handling.why}"[:500])
        self.log.info("late event handled", action=str(handling.action), event_type=str(event.type),
                      process_workflow_id=input.process_workflow_id, case_id=case_id)
        self._stage(str(handling.action))
        await self.cases.drain()
        return outcome

    async def _apply(self, outcome: LateEventOutcome) -> None:
        event = self.input.event
        found = await call(RegistryActivities.closed_process,
                           ClosedProcessQuery(workflow_id=self.input.process_workflow_id),
                           summary=f"read ended process {self.input.process_workflow_id}")
        plan = plan_goods(event, found.process)
        outcome.unresolved += plan.unresolved
        info = workflow.info()
        skus = sorted({line.sku for m in plan.movements for line in m.lines})
        locations = sorted({line.location_id for m in plan.movements for line in m.lines})
        self.view.skus(skus)
        self.view.locations(locations)
        self.cases.scope(location_ids=locations, skus=skus)
        for movement in plan.movements:
            request = MovementRequest(key=f"{self.workflow_id}:{movement.step}", kind=movement.kind,
                                      lines=movement.lines, reason=movement.reason,
                                      reason_code=movement.reason_code, workflow_id=self.workflow_id,
                                      run_id=info.run_id, reference=self.input.business_key)
            try:
                await call(ErpActivities.post_movement, request,
                           summary=f"{movement.kind} {sum(abs(ln.quantity) for ln in movement.lines)} units "
                                   f"({movement.step})")
            except ActivityError as err:
                if refusal_type(err) != ErrorType.INSUFFICIENT_STOCK:
                    raise
                outcome.unresolved.append(f"{movement.step}: the ledger does not hold the units "
                                          f"({err.cause.message if err.cause else err}): count the location")
                self.log.warning("late event: units not in the ledger", step=movement.step)
                return
            outcome.movement_keys.append(request.key)

    def _stage(self, stage: str) -> None:
        self.stage = stage
        self.view.stage(stage)
        self.view.exceptions(self.cases.open_count, self.cases.sla_breached)

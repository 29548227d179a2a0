"""LateEvent: an event that came after its process had ended (workflow ID `late:{event identity}`).

Started by the door's dispatch when the event's process is found closed (in the process registry, or by
Temporal refusing to start a finished business key again). It stores the event with its payload, takes goods
that physically moved into the ledger (domain.late.plan_goods: a late return parcel into pending_inspection, a
late transfer receipt into available, a parcel dispatched after the order ended out of it), and opens the
exception case that tells ops (`late_event`, or `shipped_after_cancel` for goods that left). A delivery
confirmation after the settlement closed is only stored. Its movements are keyed by this workflow's ID, so
one event is applied once whatever is retried.

It is a process like the others (BusinessKey, Stage, its case through ProcessCases, built on `Process`), so ops
find it under the ended process's business key; it has no events of its own to wait for and no registry entry
(the event is stored in `late_events`). Release 3: the store, the read of the ended process and the movements run
as local activities in one workflow task, and the view is written once, at the end.
"""
from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.erp import ErpActivities
    from activities.registry import ClosedProcessQuery, RegistryActivities
    from domain.errors import ErrorType
    from domain.late import (
        LateAction,
        LateEventInput,
        LateEventOutcome,
        LateEventRecord,
        late_case_id,
        late_handling,
        plan_goods,
    )
    from domain.process import ProcessInput, ProcessPolicy
    from workflows.calls import call_local, refusal_type
    from workflows.common import on_release_3
    from workflows.process import Process, Shown
    from workflows.release_2 import late_event as release_2


@workflow.defn(name="LateEvent")
class LateEvent(Process):
    process_type = "LateEvent"

    @workflow.init
    def __init__(self, input: LateEventInput) -> None:
        self.legacy = None if on_release_3() else release_2.LateEvent(input)
        if self.legacy is not None:
            return
        super().__init__(ProcessInput(business_key=input.business_key, channel=input.channel,
                                      policy=ProcessPolicy(sla=input.sla)))
        self.late = input
        self.stage = "storing"
        self.outcome: LateEventOutcome | None = None
        self.skus: list[str] = []
        self.location_ids: list[str] = []

    @workflow.query(name="state", description="The late event: its stage, and once handled what was done with it.")
    def state(self) -> dict:
        if self.legacy is not None:
            return self.legacy.state()
        return {"workflow_id": self.workflow_id, "business_key": self.late.business_key, "stage": self.stage,
                "event_id": self.late.event.event_id, "event_type": str(self.late.event.type),
                "process_workflow_id": self.late.process_workflow_id,
                "outcome": self.outcome.model_dump(mode="json") if self.outcome else None,
                "exception_cases": [ref.model_dump(mode="json") for ref in self.cases.refs()]}

    def shown(self) -> Shown:
        return Shown(stage=self.stage, skus=self.skus, location_ids=self.location_ids)

    @workflow.run
    async def run(self, input: LateEventInput) -> LateEventOutcome:
        if self.legacy is not None:
            return await self.legacy.run(input)
        event = input.event
        handling = late_handling(event.type)
        case_id = late_case_id(self.workflow_id, event.type)
        # The store, the read of the ended process and the movements are local activities of this one workflow
        # task (one action): each is short and idempotent by key (the event identity, the movement keys).
        await call_local(RegistryActivities.record_late_event, LateEventRecord(
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
            self.stage = "applying"
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
        self.stage = str(handling.action)
        self.refresh()
        await self.cases.drain()
        self.view.flush()
        return outcome

    async def _apply(self, outcome: LateEventOutcome) -> None:
        event = self.late.event
        found = await call_local(RegistryActivities.closed_process,
                                 ClosedProcessQuery(workflow_id=self.late.process_workflow_id),
                                 summary=f"read ended process {self.late.process_workflow_id}")
        plan = plan_goods(event, found.process)
        outcome.unresolved += plan.unresolved
        self.skus = sorted({line.sku for m in plan.movements for line in m.lines})
        self.location_ids = sorted({line.location_id for m in plan.movements for line in m.lines})
        self.cases.scope(location_ids=self.location_ids, skus=self.skus)
        for movement in plan.movements:
            request = self.movement(movement.step, movement.kind, movement.lines, movement.reason,
                                    reason_code=movement.reason_code)
            try:
                await call_local(ErpActivities.post_movement, request,
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

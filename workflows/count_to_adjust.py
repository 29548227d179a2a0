"""CountToAdjust: a cycle count turned into adjustments, with ops approval beyond tolerance (`count:{count_id}`).

`count.submitted` (from the WMS or a store) starts it on the `event` signal; another count.submitted for the same
count ID (a new event, not a redelivery) is noted and ignored: a count is one moment.

1. The location must be known; SKUs the item master does not know are refused line by line. The ledger is read as
   it stood at `counted_at` (`get_stock` with `as_of`: the movements up to then) and each SKU's variance computed
   (domain.counts.evaluate).
2. Variances within both tolerances (`count_tolerance_units`, `count_tolerance_value`, recorded in the input when
   the process starts) are adjusted at once: ADJUST of `available`, reason code `cycle_count` (the ledger's journal
   posts Dr shrink / Cr inventory for a loss, the reverse for a gain).
3. Variances beyond wait for ops: update `approve` or `reject` (`DecisionRequest`: a note, the decider), from the
   Temporal UI, `retailflow counts approve|reject` or `POST /counts/{count_id}/approve|reject`; the validator
   refuses a decision when none is awaited. `count_approval_overdue` (24 h by default) runs while it waits; the
   decision resolves the case. Approved variances are adjusted like the others; rejected ones are left as they are.
4. Never negative stock: a loss beyond what is available now (the rest reserved or picked for running processes)
   is adjusted down to zero available and the remainder opens `count_below_held`. A reservation that takes stock
   between reading and posting makes the ledger refuse the adjustment (InsufficientStock): the process reads the
   stock again and re-plans, a few times.

Release 3 (docs/inventory-control.md, "Actions"): the reads and the adjustments run as local activities; the
decision is applied by the update itself (the run only waits for the count to end), so a run that continues as new
while ignored counts keep coming never waits on an update that waits on it.
"""
from collections.abc import Iterable

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.erp import ErpActivities
    from adapters.erp import StockInput
    from domain.counts import (
        CYCLE_COUNT,
        CountLine,
        CountOutcome,
        CountStage,
        CountState,
        Decision,
        DecisionRequest,
        LineStatus,
        details_markdown,
        evaluate,
        plan_adjustment,
        plan_count,
    )
    from domain.errors import ErrorType
    from domain.events import CountSubmitted, Event, EventType
    from domain.inventory import Bucket, MovementKind, MovementLine
    from domain.process import ProcessInput
    from domain.sla import CaseKind, SlaKind
    from workflows.calls import call_local, refusal_type
    from workflows.common import on_release_3
    from workflows.inventory_control import InventoryControl
    from workflows.release_2 import count_to_adjust as release_2

ADJUST_ATTEMPTS = 3  # re-read the stock after a reservation took it between reading and posting


@workflow.defn(name="CountToAdjust")
class CountToAdjust(InventoryControl):
    process_type = "CountToAdjust"
    describe = staticmethod(details_markdown)

    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        self.legacy = None if on_release_3() else release_2.CountToAdjust(input)
        if self.legacy is not None:
            return
        super().__init__(input, CountState(workflow_id=workflow.info().workflow_id, count_id=input.business_key,
                                           tolerance_units=input.policy.count_tolerance_units,
                                           tolerance_value=input.policy.count_tolerance_value))

    # --- handlers -------------------------------------------------------------------------------------------
    @workflow.signal(name="event", description="count.submitted (the count itself); another count for the same "
                                                "ID is noted and ignored.")
    def event(self, event: Event) -> None:
        if self.legacy is not None:
            return self.legacy.event(event)
        seen = self.inbox.seen_ids
        if seen and event.event_id not in seen:  # the count is submitted already: a count is one moment
            seen.add(event.event_id)
            self.state.notes.append(f"count.submitted {event.event_id} ignored: count {self.state.count_id} is "
                                    "already submitted")
            return
        self.hold(event)

    @workflow.update(name="approve", description="Ops approve the variances beyond tolerance: they are adjusted "
                                                 "(reason cycle_count). {note, decided_by}")
    async def approve(self, request: DecisionRequest) -> CountState:
        if self.legacy is not None:
            return await self.legacy.approve(request)
        return await self._decide("approved", request)

    @workflow.update(name="reject", description="Ops reject the variances beyond tolerance: the ledger stays as it "
                                                "is (recount). {note, decided_by}")
    async def reject(self, request: DecisionRequest) -> CountState:
        if self.legacy is not None:
            return await self.legacy.reject(request)
        return await self._decide("rejected", request)

    @approve.validator
    def _validate_approve(self, request: DecisionRequest) -> None:
        if self.legacy is not None:
            return self.legacy._validate_approve(request)
        self._validate(request)

    @reject.validator
    def _validate_reject(self, request: DecisionRequest) -> None:
        if self.legacy is not None:
            return self.legacy._validate_reject(request)
        self._validate(request)

    def _validate(self, request: DecisionRequest) -> None:
        s = self.state
        if s.decision is not None:
            raise ValueError(f"count {s.count_id} has been decided already")
        if s.stage is not CountStage.AWAITING_APPROVAL:
            raise ValueError(f"count {s.count_id} is {s.stage}: no decision is awaited")
        if not request.note.strip():
            raise ValueError("a note is required: say why")

    @workflow.query(name="state", description="The count: per SKU counted, ledger at counted_at, variance, value, "
                                              "tolerance, status, adjusted; the decision; cases.")
    def query_state(self) -> CountState:
        if self.legacy is not None:
            return self.legacy.query_state()
        return self.current()

    # --- the process ----------------------------------------------------------------------------------------
    @workflow.run
    async def run(self, input: ProcessInput) -> CountOutcome:
        if self.legacy is not None:
            return await self.legacy.run(input)
        s = self.state
        if input.resume is None:
            submitted = await self.inbox.next(EventType.COUNT_SUBMITTED)  # it started the process: it is here
            assert isinstance(submitted.data, CountSubmitted)
            if await self._evaluate(submitted.data):
                within = [ln for ln in s.lines if ln.within_tolerance and ln.variance]
                await self._adjust(within, "within", reason="cycle count within tolerance")
                if any(ln.status is LineStatus.AWAITING_APPROVAL for ln in s.lines):
                    s.stage = CountStage.AWAITING_APPROVAL
                    self.cases.start_clock(SlaKind.COUNT_APPROVAL_OVERDUE)
                    s.approval_due_at = workflow.now() + self.policy.sla.deadline(SlaKind.COUNT_APPROVAL_OVERDUE)
                    self.log.info("count.awaiting_approval",
                                  skus=[ln.sku for ln in s.lines if ln.status is LineStatus.AWAITING_APPROVAL])
                else:
                    self._conclude()
            self.refresh()
        await self.until(lambda: s.stage.final)  # the decision (`_decide`) ends it
        await self.finish()
        return CountOutcome(workflow_id=s.workflow_id, count_id=s.count_id, stage=s.stage, reason=s.refusal_reason,
                            adjusted_units=sum(ln.adjusted for ln in s.lines), shrink=s.shrink(), gain=s.gain(),
                            not_adjusted=sum(ln.not_adjusted for ln in s.lines),
                            decided_by=s.decision.decided_by if s.decision else None)

    async def _evaluate(self, data: CountSubmitted) -> bool:
        s = self.state
        s.location_id, s.counted_at, s.submitted_at = data.location_id, data.counted_at, workflow.now()
        items, locations = await self.master_data([ln.sku for ln in data.lines], [data.location_id])
        s.lines, s.refused_lines = plan_count(data.lines, items)
        if not self.accepted(data.location_id, locations.get(data.location_id),
                             nothing="no SKU of the count is known to the item master"):
            return False
        at_count = await call_local(ErpActivities.get_stock, StockInput(
            skus=[ln.sku for ln in s.lines], location_id=data.location_id, as_of=data.counted_at,
        ), summary=f"ledger at {data.location_id} as of {data.counted_at:%Y-%m-%d %H:%M:%S}")
        evaluate(s.lines, at_count.buckets, s.tolerance_units, s.tolerance_value)
        self.log.info("count.evaluated", lines=len(s.lines), variance=sum(ln.variance for ln in s.lines),
                      beyond=[ln.sku for ln in s.lines if not ln.within_tolerance])
        return True

    async def _decide(self, verdict: str, request: DecisionRequest) -> CountState:
        """Apply ops' decision and end the count; the answer is the count as it then stands. The first decision
        accepted is the one taken: another accepted in the same moment waits for the end and answers the same."""
        s = self.state
        if s.decision is None:
            s.decision = Decision(decision=verdict, note=request.note, decided_by=request.decided_by,
                                  decided_at=workflow.now())
            self.cases.stop_clock(SlaKind.COUNT_APPROVAL_OVERDUE, by=f"{verdict} by {request.decided_by}")
            self.log.info("count.decided", decision=verdict, by=request.decided_by)
            beyond = [ln for ln in s.lines if ln.status is LineStatus.AWAITING_APPROVAL]
            if verdict == "approved":
                await self._adjust(beyond, "approved", reason=f"cycle count approved by {request.decided_by}: "
                                                              f"{request.note}")
            else:
                for line in beyond:
                    line.status = LineStatus.REJECTED
                s.stage = CountStage.REJECTED
            self._conclude()
            self.refresh()
        await workflow.wait_condition(lambda: s.stage.final)
        return self.current()

    def _conclude(self) -> None:
        """The count's end once every variance is adjusted or decided: losses held for running processes open
        `count_below_held`."""
        s = self.state
        held = [ln for ln in s.lines if ln.not_adjusted]
        if held:
            self.cases.open_case(
                CaseKind.COUNT_BELOW_HELD,
                summary=f"count {s.count_id} at {s.location_id}: counted fewer than running processes hold; "
                        f"{sum(ln.not_adjusted for ln in held)} unit(s) not adjusted",
                details={ln.sku: f"counted {ln.counted}, ledger at count {ln.on_hand_at_count}, adjusted "
                                 f"{ln.adjusted}, not adjusted {ln.not_adjusted} (reserved or picked)" for ln in held})
        if s.stage is not CountStage.REJECTED:
            s.stage = CountStage.ADJUSTED

    async def _adjust(self, lines: Iterable[CountLine], step: str, *, reason: str) -> None:
        """Post the variances of `lines` as one ADJUST of `available`, never below zero (re-planned after a race).
        Local activities: the stock read and the movement (short, idempotent by its key) in one workflow task."""
        s = self.state
        lines = list(lines)
        if not lines:
            return
        assert s.location_id is not None
        for attempt in range(ADJUST_ATTEMPTS):
            now = await call_local(ErpActivities.get_stock, StockInput(skus=[ln.sku for ln in lines],
                                                                       location_id=s.location_id),
                                   summary=f"stock at {s.location_id} now")
            plan = plan_adjustment(lines, {sku: b.get(Bucket.AVAILABLE.value, 0) for sku, b in now.buckets.items()})
            moves = [MovementLine(sku=sku, location_id=s.location_id, quantity=q, bucket=Bucket.AVAILABLE)
                     for sku, (q, _) in sorted(plan.items()) if q]
            suffix = f":{attempt}" if attempt else ""
            try:
                if moves:
                    await call_local(ErpActivities.post_movement, self.movement(
                        f"adjust:{step}{suffix}", MovementKind.ADJUST, moves, reason, reason_code=CYCLE_COUNT,
                    ), summary=f"adjust {sum(m.quantity for m in moves):+d} units ({step})")
            except ActivityError as err:
                if refusal_type(err) != ErrorType.INSUFFICIENT_STOCK:
                    raise
                if attempt + 1 < ADJUST_ATTEMPTS:
                    self.log.info("count.adjust_race", attempt=attempt)
                    continue
                # stock kept being taken while adjusting: leave the losses to ops (count_below_held)
                # (a gain is not posted either: the movement is all or nothing; the note says so)
                plan = {sku: (0, held - posted if posted <= 0 else 0) for sku, (posted, held) in plan.items()}
                s.notes.append(f"stock kept moving while adjusting ({step}): nothing posted, losses left to ops")
            for line in lines:
                posted, held = plan.get(line.sku, (0, 0))
                line.adjusted, line.not_adjusted = posted, held
                line.status = LineStatus.ADJUSTED
            self.log.info("count.adjusted", step=step, units=sum(m.quantity for m in moves),
                          held_back=sum(h for _, h in plan.values()))
            return

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
"""
from collections.abc import Iterable

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.erp import ErpActivities
    from adapters.erp import LookupItemsInput, LookupLocationsInput, StockInput
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
    from domain.inventory import Bucket, MovementKind, MovementLine, MovementRequest
    from domain.process import ProcessInput
    from domain.sla import CaseKind, SlaKind
    from workflows.release_2.calls import call, refusal_type
    from workflows.release_2.process import Inbox, ProcessLog, ProcessView, enter_closed
    from workflows.release_2.sla import ProcessCases

ADJUST_ATTEMPTS = 3  # re-read the stock after a reservation took it between reading and posting


# (release 2.0 implementation of CountToAdjust: its @workflow.defn is the entry in workflows/)
class CountToAdjust:
    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        self.input = input
        self.inbox = Inbox(input.pending)
        self.state = CountState(workflow_id=workflow.info().workflow_id, count_id=input.business_key,
                                tolerance_units=input.policy.count_tolerance_units,
                                tolerance_value=input.policy.count_tolerance_value)
        self.log = ProcessLog(input.business_key)
        self.view = ProcessView(input.business_key, input.channel)
        self.cases = ProcessCases(process_type="CountToAdjust", business_key=input.business_key,
                                  channel=input.channel, policy=input.policy.sla, view=self.view, inbox=self.inbox,
                                  log=self.log)
        self.request: tuple[str, DecisionRequest] | None = None
        self.opened = False

    # --- handlers -------------------------------------------------------------------------------------------
    @workflow.signal(name="event", description="count.submitted (the count itself); another count for the same "
                                                "ID is noted and ignored.")
    def event(self, event: Event) -> None:
        if self.opened and event.event_id not in self.inbox.seen_ids:
            self.inbox.seen_ids.add(event.event_id)
            self.state.notes.append(f"count.submitted {event.event_id} ignored: count {self.state.count_id} is "
                                    "already submitted")
            return
        if not self.inbox.offer(event):
            self.state.duplicate_events += 1
        self.opened = True

    @workflow.update(name="approve", description="Ops approve the variances beyond tolerance: they are adjusted "
                                                 "(reason cycle_count). {note, decided_by}")
    async def approve(self, request: DecisionRequest) -> CountState:
        self.request = ("approved", request)
        await workflow.wait_condition(lambda: self.state.stage.final)
        return self.query_state()

    @workflow.update(name="reject", description="Ops reject the variances beyond tolerance: the ledger stays as it "
                                                "is (recount). {note, decided_by}")
    async def reject(self, request: DecisionRequest) -> CountState:
        self.request = ("rejected", request)
        await workflow.wait_condition(lambda: self.state.stage.final)
        return self.query_state()

    @approve.validator
    def _validate_approve(self, request: DecisionRequest) -> None:
        self._validate(request)

    @reject.validator
    def _validate_reject(self, request: DecisionRequest) -> None:
        self._validate(request)

    def _validate(self, request: DecisionRequest) -> None:
        s = self.state
        if self.request is not None or s.decision is not None:
            raise ValueError(f"count {s.count_id} has been decided already")
        if s.stage is not CountStage.AWAITING_APPROVAL:
            raise ValueError(f"count {s.count_id} is {s.stage}: no decision is awaited")
        if not request.note.strip():
            raise ValueError("a note is required: say why")

    @workflow.query(name="state", description="The count: per SKU counted, ledger at counted_at, variance, value, "
                                              "tolerance, status, adjusted; the decision; cases.")
    def query_state(self) -> CountState:
        return self.state.model_copy(update={"exceptions": [r.model_dump(mode="json") for r in self.cases.refs()]})

    # --- the process ----------------------------------------------------------------------------------------
    @workflow.run
    async def run(self, input: ProcessInput) -> CountOutcome:
        self._publish()
        submitted = await self.inbox.next(EventType.COUNT_SUBMITTED)
        assert isinstance(submitted.data, CountSubmitted)
        self.opened = True
        if await self._evaluate(submitted.data):
            within = [ln for ln in self.state.lines if ln.within_tolerance and ln.variance]
            await self._adjust(within, "within", reason="cycle count within tolerance")
            beyond = [ln for ln in self.state.lines if ln.status is LineStatus.AWAITING_APPROVAL]
            if beyond:
                await self._await_decision(beyond)
            self._below_held()
            if self.state.stage is not CountStage.REJECTED:
                self.state.stage = CountStage.ADJUSTED
        return await self._finish()

    async def _evaluate(self, data: CountSubmitted) -> bool:
        s = self.state
        s.location_id, s.counted_at, s.submitted_at = data.location_id, data.counted_at, workflow.now()
        found = await call(ErpActivities.lookup_items, LookupItemsInput(skus=[ln.sku for ln in data.lines]),
                           summary=f"look up {len(data.lines)} SKUs")
        s.lines, s.refused_lines = plan_count(data.lines, found.items)
        locations = await call(ErpActivities.lookup_locations, LookupLocationsInput(location_ids=[data.location_id]),
                               summary=f"look up {data.location_id}")
        self.cases.scope(location_ids=[data.location_id], skus=s.skus)
        location = locations.locations.get(data.location_id)
        if location is None:
            return self._refuse(f"unknown location {data.location_id}")
        s.legal_entity = location.legal_entity
        if not s.lines:
            return self._refuse("no SKU of the count is known to the item master")
        at_count = await call(ErpActivities.get_stock, StockInput(skus=[ln.sku for ln in s.lines],
                                                                  location_id=data.location_id,
                                                                  as_of=data.counted_at),
                              summary=f"ledger at {data.location_id} as of {data.counted_at:%Y-%m-%d %H:%M:%S}")
        evaluate(s.lines, at_count.buckets, s.tolerance_units, s.tolerance_value)
        self.log.info("count.evaluated", lines=len(s.lines), variance=sum(ln.variance for ln in s.lines),
                      beyond=[ln.sku for ln in s.lines if not ln.within_tolerance])
        self._publish()
        return True

    def _refuse(self, reason: str) -> bool:
        self.state.stage, self.state.refusal_reason = CountStage.REFUSED, reason
        self.log.warning("count.refused", reason=reason)
        return False

    async def _await_decision(self, beyond: list[CountLine]) -> None:
        s = self.state
        s.stage = CountStage.AWAITING_APPROVAL
        self.cases.start_clock(SlaKind.COUNT_APPROVAL_OVERDUE)
        s.approval_due_at = self.cases.deadline(SlaKind.COUNT_APPROVAL_OVERDUE)
        self._publish()
        self.log.info("count.awaiting_approval", skus=[ln.sku for ln in beyond])
        await workflow.wait_condition(lambda: self.request is not None)
        assert self.request is not None
        verdict, request = self.request
        s.decision = Decision(decision=verdict, note=request.note, decided_by=request.decided_by,
                              decided_at=workflow.now())
        self.cases.stop_clock(SlaKind.COUNT_APPROVAL_OVERDUE, by=f"{verdict} by {request.decided_by}")
        self.log.info("count.decided", decision=verdict, by=request.decided_by)
        if verdict == "approved":
            await self._adjust(beyond, "approved", reason=f"cycle count approved by {request.decided_by}: "
                                                          f"{request.note}")
        else:
            for line in beyond:
                line.status = LineStatus.REJECTED
            s.stage = CountStage.REJECTED

    async def _adjust(self, lines: Iterable[CountLine], step: str, *, reason: str) -> None:
        """Post the variances of `lines` as one ADJUST of `available`, never below zero (re-planned after a race)."""
        s = self.state
        lines = list(lines)
        if not lines:
            return
        assert s.location_id is not None
        for attempt in range(ADJUST_ATTEMPTS):
            now = await call(ErpActivities.get_stock, StockInput(skus=[ln.sku for ln in lines],
                                                                 location_id=s.location_id),
                             summary=f"stock at {s.location_id} now")
            plan = plan_adjustment(lines, {sku: b.get(Bucket.AVAILABLE.value, 0) for sku, b in now.buckets.items()})
            moves = [MovementLine(sku=sku, location_id=s.location_id, quantity=q, bucket=Bucket.AVAILABLE)
                     for sku, (q, _) in sorted(plan.items()) if q]
            suffix = f":{attempt}" if attempt else ""
            try:
                if moves:
                    info = workflow.info()
                    await call(ErpActivities.post_movement, MovementRequest(
                        key=f"{s.workflow_id}:adjust:{step}{suffix}", kind=MovementKind.ADJUST, lines=moves,
                        reason=reason, reason_code=CYCLE_COUNT, workflow_id=info.workflow_id, run_id=info.run_id,
                        reference=s.count_id,
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
            self._publish()
            return

    def _below_held(self) -> None:
        held = [ln for ln in self.state.lines if ln.not_adjusted]
        if not held:
            return
        self.cases.open_case(
            CaseKind.COUNT_BELOW_HELD,
            summary=f"count {self.state.count_id} at {self.state.location_id}: counted fewer than running processes "
                    f"hold; {sum(ln.not_adjusted for ln in held)} unit(s) not adjusted",
            details={ln.sku: f"counted {ln.counted}, ledger at count {ln.on_hand_at_count}, adjusted {ln.adjusted}, "
                             f"not adjusted {ln.not_adjusted} (reserved or picked)" for ln in held})

    async def _finish(self) -> CountOutcome:
        s = self.state
        s.ignored_events = [e.event_id for e in self.inbox.pending]
        self._publish()
        await self.cases.drain()
        await workflow.wait_condition(workflow.all_handlers_finished)
        await enter_closed("CountToAdjust", self.input.business_key, self.input.channel, str(s.stage), str(s.stage),
                           self.query_state(), self.inbox)
        self.log.info("count.ended", stage=str(s.stage))
        return CountOutcome(workflow_id=s.workflow_id, count_id=s.count_id, stage=s.stage, reason=s.refusal_reason,
                            adjusted_units=sum(ln.adjusted for ln in s.lines), shrink=s.shrink(), gain=s.gain(),
                            not_adjusted=sum(ln.not_adjusted for ln in s.lines),
                            decided_by=s.decision.decided_by if s.decision else None)

    def _publish(self) -> None:
        s = self.state
        self.view.stage(str(s.stage))
        if s.skus:
            self.view.skus(s.skus)
        if s.location_id:
            self.view.locations([s.location_id])
        self.view.exceptions(self.cases.open_count, self.cases.sla_breached)
        self.view.details(details_markdown(s))

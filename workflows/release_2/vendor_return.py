"""VendorReturn: units in `vendor_return` shipped back to the supplier and credited (workflow ID `rtv:{rtv_id}`).

Events arrive on the `event` signal (signal-with-start: an early `vendor_credit.received` is held until the
shipment opens the process; a redelivered event_id is applied once).

1. `vendor_return.shipped` (from the WMS): the location must be known, unknown SKUs are refused. What
   `vendor_return` holds of each SKU now is read and at most that is taken out of the ledger (VENDOR_RETURN: Dr
   vendor credit receivable, Cr inventory, at standard cost, by the location's legal entity); units named beyond
   it open `vendor_return_short` and are never taken from another bucket. Another RTV taking the same units
   between reading and posting makes the ledger refuse (InsufficientStock): the process reads again and re-plans.
   `vendor_credit_overdue` (30 days by default) starts.
2. `vendor_credit.received` (from the ERP): the credit is posted against the receivable (Dr accounts payable, Cr
   vendor credit receivable); a credit that differs clears the receivable all the same, the difference to the
   vendor credit variance account, and opens `vendor_credit_mismatch`. A credit in another currency is not
   posted: it is noted, opens the mismatch case, and the process waits for the credit in the receivable's
   currency. The credit stops the overdue clock (resolving its case if it breached).
If `vendor_return.shipped` never comes within `input.policy.open_timeout`, the process ends `expired`.
"""
from decimal import Decimal

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.erp import ErpActivities
    from adapters.erp import FinancialPosting, LookupItemsInput, LookupLocationsInput, StockInput
    from domain.errors import ErrorType
    from domain.events import Event, EventType, VendorCreditReceived, VendorReturnShipped
    from domain.inventory import Bucket, MovementKind, MovementLine, MovementRequest
    from domain.journal import FinancialEvent
    from domain.process import ProcessInput
    from domain.sla import CaseKind, SlaKind
    from domain.vendor_returns import (
        CreditNote,
        RtvOutcome,
        RtvStage,
        RtvState,
        details_markdown,
        plan_credit,
        plan_lines,
        plan_shipment,
    )
    from workflows.release_2.calls import call, refusal_type
    from workflows.release_2.process import Inbox, ProcessLog, ProcessView, enter_closed
    from workflows.release_2.sla import ProcessCases

SHIP_ATTEMPTS = 3


# (release 2.0 implementation of VendorReturn: its @workflow.defn is the entry in workflows/)
class VendorReturn:
    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        self.input = input
        self.inbox = Inbox(input.pending)
        self.state = RtvState(workflow_id=workflow.info().workflow_id, rtv_id=input.business_key)
        self.log = ProcessLog(input.business_key)
        self.view = ProcessView(input.business_key, input.channel)
        self.cases = ProcessCases(process_type="VendorReturn", business_key=input.business_key,
                                  channel=input.channel, policy=input.policy.sla, view=self.view, inbox=self.inbox,
                                  log=self.log)

    @workflow.signal(name="event", description="vendor_return.shipped / vendor_credit.received; held until the "
                                                "return is ready for it, each event_id applied once.")
    def event(self, event: Event) -> None:
        if not self.inbox.offer(event):
            self.state.duplicate_events += 1

    @workflow.query(name="state", description="The return to vendor: lines shipped / short at standard cost, the "
                                              "receivable, credits and their difference, cases.")
    def query_state(self) -> RtvState:
        return self.state.model_copy(update={"exceptions": [r.model_dump(mode="json") for r in self.cases.refs()]})

    # --- the process ----------------------------------------------------------------------------------------
    @workflow.run
    async def run(self, input: ProcessInput) -> RtvOutcome:
        self._publish()
        shipped = await self.inbox.opening(EventType.VENDOR_RETURN_SHIPPED, within=input.policy.open_timeout)
        if shipped is None:
            self.state.stage = RtvStage.EXPIRED
            self.state.refusal_reason = f"vendor_return.shipped did not arrive within {input.policy.open_timeout}"
            return await self._finish()
        assert isinstance(shipped.data, VendorReturnShipped)
        if await self._ship(shipped.data):
            self.cases.start_clock(SlaKind.VENDOR_CREDIT_OVERDUE)
            self.state.credit_due_at = self.cases.deadline(SlaKind.VENDOR_CREDIT_OVERDUE)
            self._publish()
            while not self.state.stage.final:
                credit = await self.inbox.next(EventType.VENDOR_CREDIT_RECEIVED)
                assert isinstance(credit.data, VendorCreditReceived)
                await self._credit(credit.event_id, credit.data)
                self._publish()
        return await self._finish()

    async def _ship(self, data: VendorReturnShipped) -> bool:
        s = self.state
        s.location_id, s.supplier_id, s.shipped_at = data.location_id, data.supplier_id, workflow.now()
        found = await call(ErpActivities.lookup_items, LookupItemsInput(skus=[ln.sku for ln in data.lines]),
                           summary=f"look up {len(data.lines)} SKUs")
        s.lines, s.refused_lines, s.currency = plan_lines(data.lines, found.items)
        locations = await call(ErpActivities.lookup_locations, LookupLocationsInput(location_ids=[data.location_id]),
                               summary=f"look up {data.location_id}")
        self.cases.scope(location_ids=[data.location_id], skus=s.skus)
        location = locations.locations.get(data.location_id)
        if location is None:
            return self._refuse(f"unknown location {data.location_id}")
        s.legal_entity = location.legal_entity
        if not s.lines:
            return self._refuse("no SKU of the shipment is known to the item master")
        for attempt in range(SHIP_ATTEMPTS):
            held = await call(ErpActivities.get_stock, StockInput(skus=[ln.sku for ln in s.lines],
                                                                  location_id=data.location_id),
                              summary=f"vendor_return at {data.location_id}")
            plan = plan_shipment(s.lines, {sku: b.get(Bucket.VENDOR_RETURN.value, 0)
                                           for sku, b in held.buckets.items()})
            moves = [MovementLine(sku=sku, location_id=data.location_id, quantity=q)
                     for sku, (q, _) in sorted(plan.items()) if q]
            suffix = f":{attempt}" if attempt else ""
            try:
                if moves:
                    info = workflow.info()
                    await call(ErpActivities.post_movement, MovementRequest(
                        key=f"{s.workflow_id}:ship{suffix}", kind=MovementKind.VENDOR_RETURN, lines=moves,
                        reason=f"returned to vendor {data.supplier_id}", workflow_id=info.workflow_id,
                        run_id=info.run_id, reference=s.rtv_id,
                    ), summary=f"vendor return {sum(m.quantity for m in moves)} units")
            except ActivityError as err:
                if refusal_type(err) == ErrorType.INSUFFICIENT_STOCK and attempt + 1 < SHIP_ATTEMPTS:
                    self.log.info("rtv.ship_race", attempt=attempt)
                    continue
                if refusal_type(err) != ErrorType.INSUFFICIENT_STOCK:
                    raise
                plan = {sku: (0, line_total) for sku, line_total in
                        ((ln.sku, ln.requested) for ln in s.lines)}
                s.notes.append("vendor_return kept being taken by others while shipping: nothing taken out")
            break
        for line in s.lines:
            line.shipped, line.short = plan.get(line.sku, (0, line.requested))
        s.receivable = sum((ln.value for ln in s.lines), Decimal(0))
        short = [ln for ln in s.lines if ln.short]
        if short:
            self.cases.open_case(
                CaseKind.VENDOR_RETURN_SHORT,
                summary=f"RTV {s.rtv_id}: the shipment names {sum(ln.short for ln in short)} unit(s) more than "
                        f"vendor_return held at {s.location_id}; they were not taken out of the ledger",
                details={ln.sku: f"on the notice {ln.requested}, in vendor_return {ln.shipped}" for ln in short})
        self.log.info("rtv.shipped", units=sum(ln.shipped for ln in s.lines), short=sum(ln.short for ln in short),
                      receivable=str(s.receivable))
        if not s.receivable:
            s.stage = RtvStage.NOTHING_RETURNED
            return False
        s.stage = RtvStage.AWAITING_CREDIT
        return True

    def _refuse(self, reason: str) -> bool:
        self.state.stage, self.state.refusal_reason = RtvStage.REFUSED, reason
        self.log.warning("rtv.refused", reason=reason)
        return False

    async def _credit(self, event_id: str, data: VendorCreditReceived) -> None:
        s = self.state
        note = CreditNote(event_id=event_id, amount=data.amount, currency=data.currency, received_at=workflow.now(),
                          applied=data.currency == s.currency)
        s.credits.append(note)
        if not note.applied:
            s.notes.append(f"credit {data.amount} {data.currency} is not in the receivable's currency {s.currency}: "
                           "not posted; waiting for the credit in " + str(s.currency))
            self.cases.open_case(CaseKind.VENDOR_CREDIT_MISMATCH,
                                 summary=f"RTV {s.rtv_id}: credit in {data.currency}, receivable in {s.currency}",
                                 details={"receivable": f"{s.receivable} {s.currency}",
                                          "credited": f"{data.amount} {data.currency}"})
            return
        plan = plan_credit(s.receivable, data.amount)
        note.difference = data.amount - s.receivable
        await self._post("credit", FinancialEvent.VENDOR_CREDIT, plan.settle, "vendor credit against the receivable")
        await self._post("credit-short", FinancialEvent.VENDOR_CREDIT_SHORT, plan.short,
                         "vendor credited less than the returned units' cost")
        await self._post("credit-over", FinancialEvent.VENDOR_CREDIT_OVER, plan.over,
                         "vendor credited more than the returned units' cost")
        self.cases.stop_clock(SlaKind.VENDOR_CREDIT_OVERDUE, by=str(EventType.VENDOR_CREDIT_RECEIVED))
        if note.difference:
            self.cases.open_case(
                CaseKind.VENDOR_CREDIT_MISMATCH,
                summary=f"RTV {s.rtv_id}: credited {data.amount} {data.currency} against a receivable of "
                        f"{s.receivable}; the difference {note.difference} is in vendor credit variance",
                details={"receivable": str(s.receivable), "credited": str(data.amount),
                         "difference": str(note.difference), "supplier_id": s.supplier_id or ""})
        s.stage, s.credited_at = RtvStage.CREDITED, workflow.now()
        self.log.info("rtv.credited", amount=str(data.amount), difference=str(note.difference))

    async def _post(self, step: str, event: FinancialEvent, amount: Decimal, memo: str) -> None:
        if amount <= 0:
            return
        s = self.state
        info = workflow.info()
        await call(ErpActivities.post_financial, FinancialPosting(
            key=f"{s.workflow_id}:{step}", event=event, location_id=s.location_id, amount=amount,
            currency=s.currency or "USD", memo=f"RTV {s.rtv_id}: {memo}", workflow_id=info.workflow_id,
            run_id=info.run_id, reference=s.rtv_id,
        ), summary=f"{event} {amount} {s.currency}")

    async def _finish(self) -> RtvOutcome:
        s = self.state
        s.ignored_events = [e.event_id for e in self.inbox.pending]
        self._publish()
        await self.cases.drain()
        await workflow.wait_condition(workflow.all_handlers_finished)
        await enter_closed("VendorReturn", self.input.business_key, self.input.channel, str(s.stage), str(s.stage),
                           self.query_state(), self.inbox)
        self.log.info("rtv.ended", stage=str(s.stage))
        applied = [c for c in s.credits if c.applied]
        return RtvOutcome(workflow_id=s.workflow_id, rtv_id=s.rtv_id, stage=s.stage, reason=s.refusal_reason,
                          shipped=sum(ln.shipped for ln in s.lines), short=sum(ln.short for ln in s.lines),
                          receivable=s.receivable, credited=applied[-1].amount if applied else None,
                          difference=applied[-1].difference if applied else Decimal(0))

    def _publish(self) -> None:
        s = self.state
        self.view.stage(str(s.stage))
        if s.skus:
            self.view.skus(s.skus)
        if s.location_id:
            self.view.locations([s.location_id])
        self.view.exceptions(self.cases.open_count, self.cases.sla_breached)
        self.view.details(details_markdown(s))

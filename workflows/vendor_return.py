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

Release 3 (docs/inventory-control.md, "Actions"): the reads and writes of each step run as local activities, one
action per workflow task; a return that keeps receiving credits in another currency continues as new.
"""
from decimal import Decimal

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.erp import ErpActivities
    from adapters.erp import StockInput
    from domain.errors import ErrorType
    from domain.events import Event, EventType, VendorCreditReceived, VendorReturnShipped
    from domain.inventory import Bucket, MovementKind
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
    from workflows.calls import call_local, refusal_type
    from workflows.common import on_release_3
    from workflows.inventory_control import InventoryControl
    from workflows.release_2 import vendor_return as release_2

SHIP_ATTEMPTS = 3


@workflow.defn(name="VendorReturn")
class VendorReturn(InventoryControl):
    process_type = "VendorReturn"
    describe = staticmethod(details_markdown)

    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        self.legacy = None if on_release_3() else release_2.VendorReturn(input)
        if self.legacy is not None:
            return
        super().__init__(input, RtvState(workflow_id=workflow.info().workflow_id, rtv_id=input.business_key))

    @workflow.signal(name="event", description="vendor_return.shipped / vendor_credit.received; held until the "
                                                "return is ready for it, each event_id applied once.")
    def event(self, event: Event) -> None:
        if self.legacy is not None:
            return self.legacy.event(event)
        self.hold(event)

    @workflow.query(name="state", description="The return to vendor: lines shipped / short at standard cost, the "
                                              "receivable, credits and their difference, cases.")
    def query_state(self) -> RtvState:
        if self.legacy is not None:
            return self.legacy.query_state()
        return self.current()

    # --- the process ----------------------------------------------------------------------------------------
    @workflow.run
    async def run(self, input: ProcessInput) -> RtvOutcome:
        if self.legacy is not None:
            return await self.legacy.run(input)
        s = self.state
        if self.opening_pending():
            shipped = await self.opened_by(EventType.VENDOR_RETURN_SHIPPED)
            if shipped is not None:
                assert isinstance(shipped.data, VendorReturnShipped)
                if await self._ship(shipped.data):
                    self.cases.start_clock(SlaKind.VENDOR_CREDIT_OVERDUE)
                    s.credit_due_at = workflow.now() + self.policy.sla.deadline(SlaKind.VENDOR_CREDIT_OVERDUE)
            self.refresh()
        while not s.stage.final:
            credit = await self.next_event(EventType.VENDOR_CREDIT_RECEIVED)
            assert isinstance(credit.data, VendorCreditReceived)
            await self._credit(credit.event_id, credit.data)
            self.refresh()
        await self.finish()
        applied = [c for c in s.credits if c.applied]
        return RtvOutcome(workflow_id=s.workflow_id, rtv_id=s.rtv_id, stage=s.stage, reason=s.refusal_reason,
                          shipped=sum(ln.shipped for ln in s.lines), short=sum(ln.short for ln in s.lines),
                          receivable=s.receivable, credited=applied[-1].amount if applied else None,
                          difference=applied[-1].difference if applied else Decimal(0))

    async def _ship(self, data: VendorReturnShipped) -> bool:
        """Take what `vendor_return` holds out of the ledger. Local activities: the reads and the movement (short,
        idempotent by its key) in one workflow task, one action."""
        s = self.state
        s.location_id, s.supplier_id, s.shipped_at = data.location_id, data.supplier_id, workflow.now()
        items, locations = await self.master_data([ln.sku for ln in data.lines], [data.location_id])
        s.lines, s.refused_lines, s.currency = plan_lines(data.lines, items)
        if not self.accepted(data.location_id, locations.get(data.location_id),
                             nothing="no SKU of the shipment is known to the item master"):
            return False
        for attempt in range(SHIP_ATTEMPTS):
            held = await call_local(ErpActivities.get_stock, StockInput(skus=[ln.sku for ln in s.lines],
                                                                        location_id=data.location_id),
                                    summary=f"vendor_return at {data.location_id}")
            plan = plan_shipment(s.lines, {sku: b.get(Bucket.VENDOR_RETURN.value, 0)
                                           for sku, b in held.buckets.items()})
            moves = {(sku, data.location_id): q for sku, (q, _) in plan.items() if q}
            suffix = f":{attempt}" if attempt else ""
            try:
                if moves:
                    await call_local(ErpActivities.post_movement, self.movement(
                        f"ship{suffix}", MovementKind.VENDOR_RETURN, moves, f"returned to vendor {data.supplier_id}",
                    ), summary=f"vendor return {sum(moves.values())} units")
            except ActivityError as err:
                if refusal_type(err) == ErrorType.INSUFFICIENT_STOCK and attempt + 1 < SHIP_ATTEMPTS:
                    self.log.info("rtv.ship_race", attempt=attempt)
                    continue
                if refusal_type(err) != ErrorType.INSUFFICIENT_STOCK:
                    raise
                plan = {ln.sku: (0, ln.requested) for ln in s.lines}
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
        # Local activities, all in this workflow task (one action): short journal postings, idempotent by key.
        for step, event, amount, memo in (
                ("credit", FinancialEvent.VENDOR_CREDIT, plan.settle, "vendor credit against the receivable"),
                ("credit-short", FinancialEvent.VENDOR_CREDIT_SHORT, plan.short,
                 "vendor credited less than the returned units' cost"),
                ("credit-over", FinancialEvent.VENDOR_CREDIT_OVER, plan.over,
                 "vendor credited more than the returned units' cost")):
            if amount > 0:
                await call_local(ErpActivities.post_financial, self.posting(
                    step, event, amount, location_id=s.location_id, currency=s.currency or "USD",
                    memo=f"RTV {s.rtv_id}: {memo}"), summary=f"{event} {amount} {s.currency}")
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

"""ReceiveToStock: a purchase order received in parts into `available` (workflow ID `po:{po_id}`).

Events arrive on the `event` signal (signal-with-start: an early receipt or close is held until
`purchase_order.created` opens the process; a redelivered event_id is applied once).

1. `purchase_order.created` (from the ERP): lines converted to EA with the item master, unit cost per EA with them
   (domain.receiving.plan_order); the location must be known. The `po_receipt_overdue` clock runs from the PO's
   `expected_at`: it breaches `expected_at` + the grace (the SLA setting `po_receipt_overdue`, default 24 h) with
   units outstanding, and the receipt that completes the PO (or its close) resolves the case.
2. `purchase_order.received` (from the WMS or a store; one per parcel, they add up; a receipt_id seen before is not
   applied twice): RECEIPT into `available` at the receipt's location. The movement's journal carries the units at
   standard cost (Dr inventory, Cr GRNI); the purchase price variance of the receipt is posted beside it (Dr PPV,
   Cr GRNI when the PO costs more than standard, the reverse when less), so GRNI ends at PO cost x units and
   inventory stays at standard, as the invariant wants. A line beyond ordered x (1 + `over_receipt_tolerance`)
   opens `over_receipt`; a line the PO does not have is received at standard cost and opens `unknown_po_line`
   (a SKU the item master does not know cannot enter the ledger: noted in the same case). The WMS receipt is
   recorded.
3. Done when every line is received in full (stage `received`), or on `purchase_order.closed` (stage `closed`, what
   is outstanding cancelled). Receipts after that find the process closed.
If `purchase_order.created` never comes within `input.policy.open_timeout`, the process ends `expired`.
"""
from collections.abc import Mapping

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.erp import ErpActivities
    from activities.wms import WmsActivities
    from adapters.erp import FinancialPosting, LookupItemsInput, LookupLocationsInput
    from adapters.wms import ReceiptRecord, TaskLine
    from domain.events import (
        Event,
        EventType,
        PurchaseOrderClosed,
        PurchaseOrderCreated,
        PurchaseOrderReceived,
    )
    from domain.inventory import MovementKind, MovementLine, MovementRequest
    from domain.journal import FinancialEvent
    from domain.process import ProcessInput
    from domain.receiving import (
        PoLine,
        PoOutcome,
        PoReceiptNote,
        PoStage,
        PoState,
        details_markdown,
        over_tolerance,
        plan_order,
        plan_receipt,
        price_variance,
    )
    from domain.sla import CaseKind, SlaKind
    from workflows.release_2.calls import call
    from workflows.release_2.process import Inbox, ProcessLog, ProcessView, enter_closed
    from workflows.release_2.sla import ProcessCases


# (release 2.0 implementation of ReceiveToStock: its @workflow.defn is the entry in workflows/)
class ReceiveToStock:
    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        self.input = input
        self.inbox = Inbox(input.pending)
        self.state = PoState(workflow_id=workflow.info().workflow_id, po_id=input.business_key,
                             over_receipt_tolerance=input.policy.over_receipt_tolerance)
        self.log = ProcessLog(input.business_key)
        self.view = ProcessView(input.business_key, input.channel)
        self.cases = ProcessCases(process_type="ReceiveToStock", business_key=input.business_key,
                                  channel=input.channel, policy=input.policy.sla, view=self.view, inbox=self.inbox,
                                  log=self.log)
        self.receipt_ids: set[str] = set()

    @workflow.signal(name="event", description="A purchase order event (purchase_order.created / received / "
                                                "closed); held until the PO is ready for it, each event_id once.")
    def event(self, event: Event) -> None:
        if not self.inbox.offer(event):
            self.state.duplicate_events += 1
            self.log.info("po.duplicate_event", event_id=event.event_id, type=str(event.type))

    @workflow.query(name="state", description="The purchase order: stage, lines ordered / received / outstanding / "
                                              "cancelled in EA, receipts with their price variance, cases.")
    def query_state(self) -> PoState:
        return self.state.model_copy(update={"exceptions": [r.model_dump(mode="json") for r in self.cases.refs()]})

    # --- the process ----------------------------------------------------------------------------------------
    @workflow.run
    async def run(self, input: ProcessInput) -> PoOutcome:
        self._publish()
        created = await self.inbox.opening(EventType.PURCHASE_ORDER_CREATED, within=input.policy.open_timeout)
        if created is None:
            self.state.stage = PoStage.EXPIRED
            self.state.refusal_reason = f"purchase_order.created did not arrive within {input.policy.open_timeout}"
            return await self._finish()
        assert isinstance(created.data, PurchaseOrderCreated)
        if not await self._create(created.data):
            return await self._finish()
        while not self.state.stage.final:
            event = await self.inbox.next(EventType.PURCHASE_ORDER_RECEIVED, EventType.PURCHASE_ORDER_CLOSED)
            if isinstance(event.data, PurchaseOrderReceived):
                await self._receive(event.event_id, event.data)
            else:
                assert isinstance(event.data, PurchaseOrderClosed)
                self._close(event.data)
            self._publish()
        return await self._finish()

    async def _create(self, data: PurchaseOrderCreated) -> bool:
        s = self.state
        s.supplier_id, s.location_id, s.currency = data.supplier_id, data.location_id, data.currency
        s.expected_at, s.created_at = data.expected_at, workflow.now()
        found = await call(ErpActivities.lookup_items, LookupItemsInput(skus=[ln.sku for ln in data.lines]),
                           summary=f"look up {len(data.lines)} SKUs")
        s.lines, s.refused_lines = plan_order(data.lines, found.items, data.currency)
        locations = await call(ErpActivities.lookup_locations, LookupLocationsInput(location_ids=[data.location_id]),
                               summary=f"look up {data.location_id}")
        location = locations.locations.get(data.location_id)
        self.cases.scope(location_ids=[data.location_id], skus=s.skus)
        if location is None:
            return self._refuse(f"unknown location {data.location_id}")
        s.legal_entity = location.legal_entity
        if not s.lines:
            return self._refuse("no line of the purchase order could be accepted")
        s.stage = PoStage.OPEN
        self.cases.start_clock(SlaKind.PO_RECEIPT_OVERDUE, since=data.expected_at)
        s.overdue_at = self.cases.deadline(SlaKind.PO_RECEIPT_OVERDUE)
        self.log.info("po.created", lines=len(s.lines), units=sum(ln.ordered for ln in s.lines),
                      refused=[r.line_id for r in s.refused_lines])
        self._publish()
        return True

    def _refuse(self, reason: str) -> bool:
        self.state.stage = PoStage.REFUSED
        self.state.refusal_reason = reason
        self.log.warning("po.refused", reason=reason)
        return False

    async def _receive(self, event_id: str, data: PurchaseOrderReceived) -> None:
        s = self.state
        if data.receipt_id in self.receipt_ids:
            s.notes.append(f"receipt {data.receipt_id} came again (event {event_id}): not applied twice")
            return
        self.receipt_ids.add(data.receipt_id)
        where = data.location_id
        if where != s.location_id:
            locations = await call(ErpActivities.lookup_locations, LookupLocationsInput(location_ids=[where]),
                                   summary=f"look up {where}")
            if where not in locations.locations:
                s.notes.append(f"receipt {data.receipt_id} at unknown location {where}: not applied")
                self.log.warning("po.receipt_unknown_location", receipt_id=data.receipt_id, location_id=where)
                return
            s.notes.append(f"receipt {data.receipt_id} at {where}, the PO is for {s.location_id}: received there")
        strange = sorted({ln.sku for ln in data.lines} - {ln.sku for ln in s.lines})
        known = {ln.sku for ln in s.lines}
        items = {}
        if strange:
            found = await call(ErpActivities.lookup_items, LookupItemsInput(skus=strange),
                               summary=f"look up {len(strange)} SKUs not on the PO")
            items = found.items
            known |= set(items)
        plan = plan_receipt(s.lines, data.lines, known)
        for key, (sku, _) in plan.unknown.items():
            if s.line(key) is None:
                cost = items[sku].unit_cost if sku in items else next(ln.standard_cost for ln in s.lines
                                                                      if ln.sku == sku)
                s.lines.append(PoLine(line_id=key, sku=sku, as_ordered="not on the PO", ordered=0, unit_cost=cost,
                                      standard_cost=cost, on_po=False))
        units = {**plan.on_po, **{key: q for key, (_, q) in plan.unknown.items()}}
        note = PoReceiptNote(receipt_id=data.receipt_id, event_id=event_id, location_id=where,
                             received_at=workflow.now(), lines=units,
                             unknown_lines={key: q for key, (_, q) in plan.unknown.items()}, refused=plan.refused)
        by_sku = self._by_sku(units)
        if by_sku:
            await self._move(MovementKind.RECEIPT, f"receipt:{data.receipt_id}",
                             [MovementLine(sku=sku, location_id=where, quantity=q) for sku, q in sorted(by_sku.items())],
                             reason=f"PO {s.po_id} receipt {data.receipt_id}")
            note.price_variance = price_variance(s.lines, plan.on_po)
            if note.price_variance:
                await self._price_variance(data.receipt_id, where, note.price_variance)
            await call(WmsActivities.record_receipt, ReceiptRecord(
                key=f"{s.workflow_id}:receipt:{data.receipt_id}", kind="purchase_order", reference=s.po_id,
                location_id=where,
                lines=[TaskLine(line_id=lid, sku=self._line(lid).sku, quantity=q) for lid, q in sorted(units.items())],
            ), summary=f"WMS receipt {data.receipt_id} at {where}")
        for line_id, q in units.items():
            self._line(line_id).received += q
        s.receipts.append(note)
        self._cases_for(note)
        if s.outstanding == 0:
            s.stage, s.closed_at = PoStage.RECEIVED, workflow.now()
            self.cases.stop_clock(SlaKind.PO_RECEIPT_OVERDUE, by=str(EventType.PURCHASE_ORDER_RECEIVED))
        else:
            s.stage = PoStage.RECEIVING
        self.log.info("po.received", receipt_id=data.receipt_id, units=sum(units.values()),
                      price_variance=str(note.price_variance), outstanding=s.outstanding)

    def _cases_for(self, note: PoReceiptNote) -> None:
        s = self.state
        over = over_tolerance(s.lines, s.over_receipt_tolerance)
        if over:
            self.cases.open_case(
                CaseKind.OVER_RECEIPT,
                summary=f"PO {s.po_id}: received beyond the {s.over_receipt_tolerance:.0%} tolerance on "
                        f"{len(over)} line(s); the units are in stock",
                details={ln.line_id: f"{ln.sku}: ordered {ln.ordered}, received {ln.received}" for ln in over})
        if note.unknown_lines or note.refused:
            details = {key: f"{self._line(key).sku}: {q} received at standard cost, not on the PO"
                       for key, q in note.unknown_lines.items()}
            details.update({f"refused {r.line_id}": f"{r.sku} x {r.quantity}: {r.reason}" for r in note.refused})
            self.cases.open_case(
                CaseKind.UNKNOWN_PO_LINE,
                summary=f"PO {s.po_id}: receipt {note.receipt_id} has lines the PO does not have", details=details)

    def _close(self, data: PurchaseOrderClosed) -> None:
        s = self.state
        cancelled = 0
        for line in s.lines:
            left = line.outstanding
            line.cancelled += left
            cancelled += left
        s.stage, s.close_reason, s.closed_at = PoStage.CLOSED, data.reason, workflow.now()
        self.cases.stop_clock(SlaKind.PO_RECEIPT_OVERDUE, by=str(EventType.PURCHASE_ORDER_CLOSED))
        self.log.info("po.closed", reason=data.reason, cancelled=cancelled)

    async def _finish(self) -> PoOutcome:
        s = self.state
        s.ignored_events = [e.event_id for e in self.inbox.pending]
        self._publish()
        await self.cases.drain()
        await workflow.wait_condition(workflow.all_handlers_finished)
        await enter_closed("ReceiveToStock", self.input.business_key, self.input.channel, str(s.stage), str(s.stage),
                           self.query_state(), self.inbox)
        self.log.info("po.ended", stage=str(s.stage))
        return PoOutcome(workflow_id=s.workflow_id, po_id=s.po_id, stage=s.stage,
                         reason=s.refusal_reason or s.close_reason,
                         ordered=sum(ln.ordered for ln in s.lines), received=sum(ln.received for ln in s.lines),
                         cancelled=sum(ln.cancelled for ln in s.lines), over=sum(ln.over for ln in s.lines),
                         price_variance=s.price_variance)

    # --- helpers --------------------------------------------------------------------------------------------
    def _line(self, line_id: str) -> PoLine:
        line = self.state.line(line_id)
        assert line is not None
        return line

    def _by_sku(self, units: Mapping[str, int]) -> dict[str, int]:
        out: dict[str, int] = {}
        for line_id, q in units.items():
            sku = self._line(line_id).sku
            out[sku] = out.get(sku, 0) + q
        return {sku: q for sku, q in out.items() if q}

    async def _move(self, kind: MovementKind, step: str, lines: list[MovementLine], *, reason: str) -> None:
        info = workflow.info()
        await call(ErpActivities.post_movement, MovementRequest(
            key=f"{self.state.workflow_id}:{step}", kind=kind, lines=lines, reason=reason,
            workflow_id=info.workflow_id, run_id=info.run_id, reference=self.state.po_id,
        ), summary=f"{kind} {sum(ln.quantity for ln in lines)} units ({step})")

    async def _price_variance(self, receipt_id: str, location_id: str, amount) -> None:  # noqa: ANN001
        info = workflow.info()
        event = (FinancialEvent.PRICE_VARIANCE_UNFAVOURABLE if amount > 0
                 else FinancialEvent.PRICE_VARIANCE_FAVOURABLE)
        await call(ErpActivities.post_financial, FinancialPosting(
            key=f"{self.state.workflow_id}:price-variance:{receipt_id}", event=event, location_id=location_id,
            amount=abs(amount), currency=self.state.currency or "USD",
            memo=f"PO {self.state.po_id} receipt {receipt_id}: purchase price variance against standard cost",
            workflow_id=info.workflow_id, run_id=info.run_id, reference=self.state.po_id,
        ), summary=f"price variance {amount} {self.state.currency}")

    def _publish(self) -> None:
        s = self.state
        self.view.stage(str(s.stage))
        if s.skus:
            self.view.skus(s.skus)
        if s.location_id:
            self.view.locations(sorted({s.location_id, *(r.location_id for r in s.receipts)}))
        self.view.exceptions(self.cases.open_count, self.cases.sla_breached)
        self.view.details(details_markdown(s))

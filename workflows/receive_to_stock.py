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

Release 3 (docs/inventory-control.md, "Actions"): the reads and a receipt's writes run as local activities, one
action per workflow task; a PO with many receipts continues as new.
"""
from collections.abc import Mapping
from decimal import Decimal

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.erp import ErpActivities
    from activities.wms import WmsActivities
    from adapters.wms import ReceiptRecord, TaskLine
    from domain.events import (
        Event,
        EventType,
        PurchaseOrderClosed,
        PurchaseOrderCreated,
        PurchaseOrderReceived,
    )
    from domain.inventory import MovementKind
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
    from workflows.calls import call_local
    from workflows.common import on_release_3
    from workflows.inventory_control import InventoryControl
    from workflows.release_2 import receive_to_stock as release_2


@workflow.defn(name="ReceiveToStock")
class ReceiveToStock(InventoryControl):
    process_type = "ReceiveToStock"
    describe = staticmethod(details_markdown)

    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        self.legacy = None if on_release_3() else release_2.ReceiveToStock(input)
        if self.legacy is not None:
            return
        super().__init__(input, PoState(workflow_id=workflow.info().workflow_id, po_id=input.business_key,
                                        over_receipt_tolerance=input.policy.over_receipt_tolerance))

    @workflow.signal(name="event", description="A purchase order event (purchase_order.created / received / "
                                                "closed); held until the PO is ready for it, each event_id once.")
    def event(self, event: Event) -> None:
        if self.legacy is not None:
            return self.legacy.event(event)
        self.hold(event)

    @workflow.query(name="state", description="The purchase order: stage, lines ordered / received / outstanding / "
                                              "cancelled in EA, receipts with their price variance, cases.")
    def query_state(self) -> PoState:
        if self.legacy is not None:
            return self.legacy.query_state()
        return self.current()

    def location_ids(self) -> list[str]:
        s = self.state
        return sorted({s.location_id, *(r.location_id for r in s.receipts)}) if s.location_id else []

    # --- the process ----------------------------------------------------------------------------------------
    @workflow.run
    async def run(self, input: ProcessInput) -> PoOutcome:
        if self.legacy is not None:
            return await self.legacy.run(input)
        s = self.state
        if self.opening_pending():
            created = await self.opened_by(EventType.PURCHASE_ORDER_CREATED)
            if created is not None:
                assert isinstance(created.data, PurchaseOrderCreated)
                await self._create(created.data)
            self.refresh()
        while not s.stage.final:
            event = await self.next_event(EventType.PURCHASE_ORDER_RECEIVED, EventType.PURCHASE_ORDER_CLOSED)
            if isinstance(event.data, PurchaseOrderReceived):
                await self._receive(event.event_id, event.data)
            else:
                assert isinstance(event.data, PurchaseOrderClosed)
                self._close(event.data)
            self.refresh()
        await self.finish()
        return PoOutcome(workflow_id=s.workflow_id, po_id=s.po_id, stage=s.stage,
                         reason=s.refusal_reason or s.close_reason,
                         ordered=sum(ln.ordered for ln in s.lines), received=sum(ln.received for ln in s.lines),
                         cancelled=sum(ln.cancelled for ln in s.lines), over=sum(ln.over for ln in s.lines),
                         price_variance=s.price_variance)

    async def _create(self, data: PurchaseOrderCreated) -> None:
        s = self.state
        s.supplier_id, s.location_id, s.currency = data.supplier_id, data.location_id, data.currency
        s.expected_at, s.created_at = data.expected_at, workflow.now()
        items, locations = await self.master_data([ln.sku for ln in data.lines], [data.location_id])
        s.lines, s.refused_lines = plan_order(data.lines, items, data.currency)
        if not self.accepted(data.location_id, locations.get(data.location_id),
                             nothing="no line of the purchase order could be accepted"):
            return
        s.stage = PoStage.OPEN
        self.cases.start_clock(SlaKind.PO_RECEIPT_OVERDUE, since=data.expected_at)
        s.overdue_at = data.expected_at + self.policy.sla.deadline(SlaKind.PO_RECEIPT_OVERDUE)
        self.log.info("po.created", lines=len(s.lines), units=sum(ln.ordered for ln in s.lines),
                      refused=[r.line_id for r in s.refused_lines])

    async def _receive(self, event_id: str, data: PurchaseOrderReceived) -> None:
        s = self.state
        if data.receipt_id in s.receipt_ids:
            s.notes.append(f"receipt {data.receipt_id} came again (event {event_id}): not applied twice")
            return
        s.receipt_ids.append(data.receipt_id)
        where = data.location_id
        strange = sorted({ln.sku for ln in data.lines} - {ln.sku for ln in s.lines})
        items, locations = await self.master_data(strange, [where] if where != s.location_id else [])
        if where != s.location_id:
            if where not in locations:
                s.notes.append(f"receipt {data.receipt_id} at unknown location {where}: not applied")
                self.log.warning("po.receipt_unknown_location", receipt_id=data.receipt_id, location_id=where)
                return
            s.notes.append(f"receipt {data.receipt_id} at {where}, the PO is for {s.location_id}: received there")
        plan = plan_receipt(s.lines, data.lines, {ln.sku for ln in s.lines} | set(items))
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
            note.price_variance = price_variance(s.lines, plan.on_po)
            await self._post_receipt(data.receipt_id, where, by_sku, units, note.price_variance)
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

    async def _post_receipt(self, receipt_id: str, where: str, by_sku: Mapping[str, int], units: Mapping[str, int],
                            variance: Decimal) -> None:
        """The receipt into the books: RECEIPT at standard cost, the price variance beside it, the WMS receipt.
        Local activities in the workflow task of the receipt's reads (one action for all): each is a short write,
        idempotent by its key (`{workflow ID}:receipt:{receipt_id}`, `...:price-variance:{receipt_id}`), so a
        repeat after a worker crash posts nothing twice."""
        s = self.state
        movement = self.movement(f"receipt:{receipt_id}", MovementKind.RECEIPT,
                                 {(sku, where): q for sku, q in by_sku.items()},
                                 reason=f"PO {s.po_id} receipt {receipt_id}")
        await call_local(ErpActivities.post_movement, movement,
                         summary=f"receipt {sum(by_sku.values())} units ({receipt_id})")
        if variance:
            event = (FinancialEvent.PRICE_VARIANCE_UNFAVOURABLE if variance > 0
                     else FinancialEvent.PRICE_VARIANCE_FAVOURABLE)
            await call_local(ErpActivities.post_financial, self.posting(
                f"price-variance:{receipt_id}", event, abs(variance), location_id=where, currency=s.currency or "USD",
                memo=f"PO {s.po_id} receipt {receipt_id}: purchase price variance against standard cost",
            ), summary=f"price variance {variance} {s.currency}")
        await call_local(WmsActivities.record_receipt, ReceiptRecord(
            key=f"{s.workflow_id}:receipt:{receipt_id}", kind="purchase_order", reference=s.po_id, location_id=where,
            lines=[TaskLine(line_id=lid, sku=self._line(lid).sku, quantity=q) for lid, q in sorted(units.items())],
        ), summary=f"WMS receipt {receipt_id} at {where}")

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

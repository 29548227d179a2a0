"""ReturnToRefund: a customer return from authorization to refund paid (workflow ID `return:{return_id}`).

- `return.authorized` opens it: each line is checked against what the original order shipped (read back from
  the WMS shipment record, `get_shipped_lines`): a line asking for more than was shipped, naming a line never
  shipped or another SKU is refused with its reason, the rest goes on; all refused ends the process `rejected`.
- `return.received` at any known location (a store may take back an online order shipped from a DC; an unknown
  location is refused and the process keeps waiting) takes the authorized units into `pending_inspection`
  there (RETURN_RECEIPT: Dr returns pending inspection, Cr COGS), never into `available`. Units beyond the
  authorization are not taken into the ledger: they are noted as the receipt's `excess` for ops. Several
  receipts (parcels) are applied until the inspection comes.
- `return.inspected` dispositions units out of `pending_inspection` (DISPOSITION): `restock` to `available`,
  `damaged` to `damaged` then written off (WRITE_OFF: Dr shrink), `vendor_return` to `vendor_return` (stays
  there awaiting the return to the vendor). Units received but not named stay in `pending_inspection`, out of
  stock. One inspection ends the inspection stage; later receipts or inspections stay held (state `held_events`).
- the refund for the accepted (received and inspected) units, at the original line price, is issued through
  `refund_payment` and posted as SALES_RETURN (Dr sales returns, Cr refunds payable); `refund.settled` posts
  REFUND_PAID (Dr refunds payable, Cr cash clearing) and closes the process. Money postings are made at the
  legal entity of the location the order shipped from (where the sale was recognised).
- SLA clocks (ProcessCases): return_not_received (30 d from authorization; on breach the return expires: the
  case stays open for ops and the process ends `expired`), inspection_overdue (72 h from the first receipt),
  refund_overdue (5 d from inspection to refund.settled).
- never opened within `policy.open_timeout` (started by an early event): ends `never_opened`, nothing moved.
"""
from collections import defaultdict
from decimal import Decimal

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.erp import ErpActivities, FinancialPosting, LookupLocationsInput
    from activities.pos import PosActivities, RefundInput
    from activities.wms import ReceiptRecord, ShippedLinesInput, TaskLine, WmsActivities
    from domain import returns as rules
    from domain.events import (
        Disposition,
        Event,
        EventType,
        RefundSettled,
        ReturnAuthorized,
        ReturnInspected,
        ReturnReceived,
    )
    from domain.inventory import Bucket, MovementKind, MovementLine, MovementRequest
    from domain.journal import FinancialEvent
    from domain.process import ProcessInput
    from domain.returns import (
        ReceiptState,
        RefundState,
        ReturnLineState,
        ReturnOutcome,
        ReturnStage,
        ReturnState,
        Shipped,
    )
    from domain.sla import SlaKind
    from workflows.common import on_release_2
    from workflows.calls import call
    from workflows.process import Inbox, ProcessLog, ProcessView, enter_closed, markdown_table
    from workflows.sla import ProcessCases

DISPOSITION_BUCKET = {
    Disposition.RESTOCK: Bucket.AVAILABLE,
    Disposition.DAMAGED: Bucket.DAMAGED,
    Disposition.VENDOR_RETURN: Bucket.VENDOR_RETURN,
}


@workflow.defn(name="ReturnToRefund")
class ReturnToRefund:
    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        self.v2 = on_release_2()  # first, before any command (workflows/common.py)
        self.input = input
        self.policy = input.policy
        self.inbox = Inbox(input.pending)
        self.view = ProcessView(input.business_key, input.channel)
        self.log = ProcessLog(input.business_key)
        self.cases = ProcessCases(process_type="ReturnToRefund", business_key=input.business_key,
                                  channel=input.channel, policy=input.policy.sla, view=self.view,
                                  inbox=self.inbox, log=self.log)
        self.workflow_id = workflow.info().workflow_id
        self.stage = ReturnStage.AWAITING_AUTHORIZATION
        self.authorization: ReturnAuthorized | None = None
        self.lines: list[ReturnLineState] = []
        self.currency: str | None = None
        self.sale_location: str | None = None
        self.receipts: list[ReceiptState] = []
        self.inspection_excess: dict[str, int] = {}
        self.refund: RefundState | None = None
        self.notes: list[str] = []
        self._show()

    # --- run -------------------------------------------------------------------------------------------
    @workflow.run
    async def run(self, input: ProcessInput) -> ReturnOutcome:
        if not await self._wait_for_authorization():
            return await self._finish("never_opened", ReturnStage.NEVER_OPENED)
        opened = self.inbox.take(EventType.RETURN_AUTHORIZED)
        assert opened is not None and isinstance(opened.data, ReturnAuthorized)
        if not await self._authorize(opened.data):
            return await self._finish("rejected", ReturnStage.REJECTED)
        if not await self._await_receipt():
            self.log.warning("return expired: nothing received in time")
            return await self._finish("expired", ReturnStage.EXPIRED)
        await self._await_inspection()
        amount = rules.refund_amount(self.lines)
        if amount <= 0:
            self.notes.append("nothing accepted at inspection: no refund")
            return await self._finish("closed_without_refund", ReturnStage.CLOSED_WITHOUT_REFUND)
        await self._issue_refund(amount)
        await self._await_settlement()
        return await self._finish("refunded", ReturnStage.REFUNDED)

    async def _wait_for_authorization(self) -> bool:
        try:
            await workflow.wait_condition(lambda: self.inbox.has(EventType.RETURN_AUTHORIZED),
                                          timeout=self.policy.open_timeout)
        except TimeoutError:
            self.log.warning("return never authorized", held=[str(e.type) for e in self.inbox.pending])
            return False
        return True

    async def _await_receipt(self) -> bool:
        """Wait for a receipt that takes units in; False if return_not_received breached first."""
        while True:
            if not await self.cases.wait(SlaKind.RETURN_NOT_RECEIVED,
                                         lambda: self.inbox.has(EventType.RETURN_RECEIVED)):
                return False
            event = self.inbox.take(EventType.RETURN_RECEIVED)
            assert event is not None
            if await self._receive(event):
                return True

    async def _await_inspection(self) -> None:
        """Apply further receipts (parcels) until an inspection dispositions something."""
        while True:
            await workflow.wait_condition(
                lambda: self.inbox.has(EventType.RETURN_RECEIVED, EventType.RETURN_INSPECTED))
            # a parcel received before the inspection is applied first, whatever order they arrived in
            received = self.inbox.take(EventType.RETURN_RECEIVED)
            if received is not None:
                await self._receive(received)
                continue
            inspected = self.inbox.take(EventType.RETURN_INSPECTED)
            assert inspected is not None
            if await self._inspect(inspected):
                return

    async def _await_settlement(self) -> None:
        event = await self.inbox.next(EventType.REFUND_SETTLED)
        data = event.data
        assert isinstance(data, RefundSettled) and self.refund is not None
        refund = self.refund
        refund.refund_id, refund.settled_amount, refund.settled_at = data.refund_id, data.amount, workflow.now()
        if data.amount != refund.amount or data.currency != refund.currency:
            self.notes.append(f"refund.settled {data.amount} {data.currency} differs from the refund issued "
                              f"({refund.amount} {refund.currency}); refunds payable cleared at the amount issued")
            self.log.warning("refund settled with another amount", settled=str(data.amount),
                             issued=str(refund.amount))
        await call(ErpActivities.post_financial, self._posting("refund-paid", FinancialEvent.REFUND_PAID,
                                                               refund.amount, "refund paid"),
                   summary=f"post refund paid {refund.amount} {refund.currency}")
        self.cases.stop_clock(SlaKind.REFUND_OVERDUE, by=str(EventType.REFUND_SETTLED))
        self.log.info("refund settled", amount=str(data.amount), refund_id=data.refund_id)

    async def _finish(self, outcome: str, stage: ReturnStage) -> ReturnOutcome:
        self.stage = stage
        self._show()
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self.cases.drain()
        if self.v2:
            await enter_closed("ReturnToRefund", self.input.business_key, self.input.channel, outcome, str(stage),
                               self.state(), self.inbox)
        self.log.info("return process ended", outcome=outcome)
        return ReturnOutcome(
            workflow_id=self.workflow_id, outcome=outcome, stage=stage,
            received_units=sum(ln.received for ln in self.lines),
            accepted_units=sum(ln.accepted for ln in self.lines),
            refund_amount=self.refund.amount if self.refund else None, currency=self.currency,
        )

    # --- handlers --------------------------------------------------------------------------------------
    @workflow.signal(name="event", description="A business event of this return (return.authorized, "
                     "return.received, return.inspected, refund.settled); held until its turn.")
    def event(self, event: Event) -> None:
        if event.type is EventType.RETURN_AUTHORIZED and self.authorization is not None:
            # another authorization for an open return (not a redelivery: that has the same event_id)
            if event.event_id not in self.inbox.seen_ids:
                self.inbox.seen_ids.add(event.event_id)
                self.notes.append(f"return.authorized {event.event_id} ignored: the return is already authorized")
                self._show()
            return
        if self.inbox.offer(event):
            self._show()

    @workflow.query(name="state", description="The return: stage, lines with units by state, receipts, refund, "
                    "exception cases, workflow ID.")
    def state(self) -> ReturnState:
        auth = self.authorization
        return ReturnState(
            workflow_id=self.workflow_id, business_key=self.input.business_key,
            return_id=auth.return_id if auth else None, order_id=auth.order_id if auth else None,
            channel=auth.channel if auth else self.input.channel, stage=self.stage,
            return_location_id=auth.return_location_id if auth else None, currency=self.currency,
            lines=[ln.summary() for ln in self.lines], receipts=self.receipts,
            inspection_excess=self.inspection_excess, refund=self.refund, notes=self.notes,
            exception_cases=[ref.model_dump(mode="json") for ref in self.cases.refs()],
            held_events=[str(e.type) for e in self.inbox.pending],
        )

    # --- steps -----------------------------------------------------------------------------------------
    async def _authorize(self, auth: ReturnAuthorized) -> bool:
        self.authorization = auth
        shipped = await call(WmsActivities.get_shipped_lines,
                             ShippedLinesInput(channel=auth.channel, order_id=auth.order_id),
                             summary=f"shipped lines of {auth.channel}/{auth.order_id}")
        self.lines = rules.authorize(
            [(ln.line_id, ln.sku, ln.quantity, ln.reason) for ln in auth.lines],
            [Shipped(line_id=s.line_id, sku=s.sku, quantity=s.quantity, unit_price=s.unit_price,
                     currency=s.currency) for s in shipped.lines],
        )
        self.sale_location = shipped.location_ids[0] if shipped.location_ids else None
        currencies = {s.line_id: s.currency for s in shipped.lines}
        authorized = [ln for ln in self.lines if ln.authorized]
        self.currency = currencies[authorized[0].line_id] if authorized else None
        skus = [ln.sku for ln in authorized]
        self.view.skus(skus)
        self.view.locations([auth.return_location_id])
        self.cases.scope(location_ids=[auth.return_location_id], skus=skus)
        refused = [ln for ln in self.lines if ln.refused_reason]
        self.log.info("return authorized", lines=len(self.lines), refused=len(refused),
                      units=sum(ln.authorized for ln in authorized))
        if not authorized:
            return False
        self.stage = ReturnStage.AWAITING_RECEIPT
        self.cases.start_clock(SlaKind.RETURN_NOT_RECEIVED)
        self._show()
        return True

    async def _receive(self, event: Event) -> bool:
        """Take the authorized units of one receipt into pending_inspection; False if nothing was taken."""
        data = event.data
        assert isinstance(data, ReturnReceived)
        location = data.location_id
        found = await call(ErpActivities.lookup_locations, LookupLocationsInput(location_ids=[location]),
                           summary=f"look up location {location}")
        if location not in found.locations:
            self.notes.append(f"return.received {event.event_id} refused: unknown location {location}")
            self.log.warning("receipt at an unknown location refused", location_id=location)
            self._show()
            return False
        counted: dict[str, int] = {}
        for ln in data.lines:
            counted[ln.sku] = counted.get(ln.sku, 0) + ln.quantity
        take, excess = rules.allocate_receipt(self.lines, counted)
        receipt = ReceiptState(location_id=location, received_at=workflow.now(), excess=excess)
        if excess:
            self.notes.append(f"received beyond the authorization at {location}, not taken into stock: "
                              + ", ".join(f"{q} x {sku}" for sku, q in sorted(excess.items())))
        if not take:
            self.receipts.append(receipt)
            self.log.warning("receipt with nothing authorized", location_id=location)
            self._show()
            return False
        by_id = {ln.line_id: ln for ln in self.lines}
        for line_id, qty in take.items():
            receipt.units[by_id[line_id].sku] = receipt.units.get(by_id[line_id].sku, 0) + qty
        n = sum(1 for r in self.receipts if r.units)
        await call(ErpActivities.post_movement,
                   self._movement(f"return-receipt:{n}", MovementKind.RETURN_RECEIPT,
                                  [MovementLine(sku=sku, location_id=location, quantity=q)
                                   for sku, q in sorted(receipt.units.items())],
                                  f"customer return received at {location}"),
                   summary=f"receive {sum(take.values())} returned units at {location}")
        await call(WmsActivities.record_receipt, ReceiptRecord(
            key=f"{self.workflow_id}:receipt:{n}", kind="return", reference=self._return_id(), location_id=location,
            lines=[TaskLine(line_id=line_id, sku=by_id[line_id].sku, quantity=q) for line_id, q in take.items()],
        ), summary=f"record return receipt at {location}")
        for line_id, qty in take.items():
            line = by_id[line_id]
            line.received_at[location] = line.received_at.get(location, 0) + qty
        self.receipts.append(receipt)
        self.cases.stop_clock(SlaKind.RETURN_NOT_RECEIVED, by=str(EventType.RETURN_RECEIVED))
        self.cases.start_clock(SlaKind.INSPECTION_OVERDUE)
        locations = [self._authorization().return_location_id, *(r.location_id for r in self.receipts if r.units)]
        self.view.locations(locations)
        self.cases.scope(location_ids=locations, skus=[ln.sku for ln in self.lines if ln.authorized])
        self.stage = ReturnStage.AWAITING_INSPECTION
        self.log.info("return received", location_id=location, units=sum(take.values()),
                      excess=sum(excess.values()))
        self._show()
        return True

    async def _inspect(self, event: Event) -> bool:
        """Disposition the inspected units; False if the inspection named nothing pending."""
        data = event.data
        assert isinstance(data, ReturnInspected)
        moves, excess = rules.allocate_inspection(self.lines,
                                                  [(ln.sku, ln.quantity, ln.disposition) for ln in data.lines])
        for sku, q in excess.items():
            self.inspection_excess[sku] = self.inspection_excess.get(sku, 0) + q
        if excess:
            self.notes.append("inspected beyond what is pending inspection, ignored: "
                              + ", ".join(f"{q} x {sku}" for sku, q in sorted(excess.items())))
        if not moves:
            self.log.warning("inspection named nothing pending inspection")
            self._show()
            return False
        by_location: dict[str, dict[tuple[str, Disposition], int]] = defaultdict(lambda: defaultdict(int))
        for m in moves:
            by_location[m.location_id][(m.sku, m.disposition)] += m.quantity
        for location, qtys in sorted(by_location.items()):
            await call(ErpActivities.post_movement, self._movement(
                f"disposition:{location}", MovementKind.DISPOSITION,
                [MovementLine(sku=sku, location_id=location, quantity=q, to_bucket=DISPOSITION_BUCKET[d])
                 for (sku, d), q in sorted(qtys.items())],
                "returned units inspected"),
                summary=f"disposition {sum(qtys.values())} returned units at {location}")
            damaged = {sku: q for (sku, d), q in sorted(qtys.items()) if d is Disposition.DAMAGED}
            if damaged:
                await call(ErpActivities.post_movement, self._movement(
                    f"write-off:{location}", MovementKind.WRITE_OFF,
                    [MovementLine(sku=sku, location_id=location, quantity=q) for sku, q in damaged.items()],
                    "returned units damaged: written off"),
                    summary=f"write off {sum(damaged.values())} damaged returned units at {location}")
        rules.apply_moves(self.lines, moves)
        self.cases.stop_clock(SlaKind.INSPECTION_OVERDUE, by=str(EventType.RETURN_INSPECTED))
        self.cases.start_clock(SlaKind.REFUND_OVERDUE)
        self.log.info("return inspected", units=sum(m.quantity for m in moves),
                      pending=sum(ln.pending_inspection for ln in self.lines))
        self._show()
        return True

    async def _issue_refund(self, amount: Decimal) -> None:
        currency = self.currency or "USD"
        result = await call(PosActivities.refund_payment, RefundInput(
            key=f"{self.workflow_id}:refund", payment_id=None, return_id=self._return_id(), amount=amount,
            currency=currency,
        ), summary=f"refund {amount} {currency}")
        self.refund = RefundState(amount=amount, currency=currency, refund_reference=result.refund_reference,
                                  issued_at=workflow.now())
        await call(ErpActivities.post_financial, self._posting("sales-return", FinancialEvent.SALES_RETURN, amount,
                                                               "sales return: refund owed for accepted units"),
                   summary=f"post sales return {amount} {currency}")
        self.stage = ReturnStage.AWAITING_REFUND_SETTLEMENT
        self.log.info("refund issued", amount=str(amount), reference=result.refund_reference)
        self._show()

    # --- helpers ---------------------------------------------------------------------------------------
    def _authorization(self) -> ReturnAuthorized:
        assert self.authorization is not None
        return self.authorization

    def _return_id(self) -> str:
        return self._authorization().return_id

    def _movement(self, step: str, kind: MovementKind, lines: list[MovementLine], reason: str) -> MovementRequest:
        info = workflow.info()
        return MovementRequest(key=f"{self.workflow_id}:{step}", kind=kind, lines=lines, reason=reason,
                               workflow_id=info.workflow_id, run_id=info.run_id, reference=self._return_id())

    def _posting(self, step: str, event: FinancialEvent, amount: Decimal, memo: str) -> FinancialPosting:
        info = workflow.info()
        return FinancialPosting(
            key=f"{self.workflow_id}:{step}", event=event,
            location_id=self.sale_location or self._authorization().return_location_id, amount=amount,
            currency=self.refund.currency if self.refund else (self.currency or "USD"),
            memo=f"return {self._return_id()}: {memo}", workflow_id=info.workflow_id, run_id=info.run_id,
            reference=self._return_id(),
        )

    def _show(self) -> None:
        self.view.stage(str(self.stage))
        self.view.exceptions(self.cases.open_count, self.cases.sla_breached)
        if self.lines:
            headers, rows = rules.details_table(self.lines)
            text = markdown_table(headers, rows)
            if self.refund is not None:
                text += f"\n\nRefund: {self.refund.amount} {self.refund.currency}" + (
                    f", settled {self.refund.settled_amount}" if self.refund.settled_amount is not None else
                    ", awaiting refund.settled")
            if self.notes:
                text += "\n\nNotes: " + "; ".join(self.notes[-5:])
            if self.inbox.pending:
                text += "\n\nHeld: " + ", ".join(str(e.type) for e in self.inbox.pending)
            self.view.details(text)

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

Release 2 (`self.v2`, issue 17; the 1.0 path above is kept as it was for runs started on 1.0): returnable and
refundable quantities are decided in PostgreSQL under the order's row lock (`authorize_return`, `close_return`),
an over-return is refused with an `over_return` case and its goods still received into `pending_inspection`,
the return stays open through several parcels and inspection passes, the refund is priced cumulatively at the
charged amount and sent to the original payment, and receipts and refunds post in the entity that sold the
line (intercompany where the return lands in another entity). docs/returns.md has the rules.
"""
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.erp import ErpActivities
    from activities.pos import PosActivities
    from activities.wms import WmsActivities
    from adapters.erp import FinancialPosting, LookupItemsInput, LookupLocationsInput
    from adapters.pos import PaymentLookupInput, RefundInput
    from adapters.wms import (
        AuthorizeReturnInput,
        CloseReturnInput,
        CloseReturnResult,
        ReceiptRecord,
        ReturnLineRequest,
        ShippedLinesInput,
        TaskLine,
    )
    from domain import returns as rules
    from domain.errors import ErrorType
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
        Move,
        ReceiptState,
        RefundState,
        Refusal,
        ReturnLineState,
        ReturnOutcome,
        ReturnStage,
        ReturnState,
        Shipped,
    )
    from domain.sla import CaseKind, SlaKind
    from workflows.release_2.calls import call, refusal_type
    from workflows.release_2.common import on_release_2
    from workflows.release_2.process import Inbox, ProcessLog, ProcessView, enter_closed, markdown_table
    from workflows.release_2.sla import ProcessCases

DISPOSITION_BUCKET = {
    Disposition.RESTOCK: Bucket.AVAILABLE,
    Disposition.DAMAGED: Bucket.DAMAGED,
    Disposition.VENDOR_RETURN: Bucket.VENDOR_RETURN,
}


# (release 2.0 implementation of ReturnToRefund: its @workflow.defn is the entry in workflows/)
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
        # release 2
        self.payment_id: str | None = None
        self.receiving_complete = False
        self.last_receipt_at: datetime | None = None
        self.window_ends: datetime | None = None
        self.inspection_passes = 0
        self._show()

    # --- run -------------------------------------------------------------------------------------------
    @workflow.run
    async def run(self, input: ProcessInput) -> ReturnOutcome:
        if self.v2:
            return await self._run_v2()
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
        data, refund = self._record_settlement(event)
        await call(ErpActivities.post_financial, self._posting("refund-paid", FinancialEvent.REFUND_PAID,
                                                               refund.amount, "refund paid"),
                   summary=f"post refund paid {refund.amount} {refund.currency}")
        self.cases.stop_clock(SlaKind.REFUND_OVERDUE, by=str(EventType.REFUND_SETTLED))
        self.log.info("refund settled", amount=str(data.amount), refund_id=data.refund_id)

    def _record_settlement(self, event: Event) -> tuple[RefundSettled, RefundState]:
        data = event.data
        assert isinstance(data, RefundSettled) and self.refund is not None
        refund = self.refund
        refund.refund_id, refund.settled_amount, refund.settled_at = data.refund_id, data.amount, workflow.now()
        if data.amount != refund.amount or data.currency != refund.currency:
            self.notes.append(f"refund.settled {data.amount} {data.currency} differs from the refund issued "
                              f"({refund.amount} {refund.currency}); refunds payable cleared at the amount issued")
            self.log.warning("refund settled with another amount", settled=str(data.amount),
                             issued=str(refund.amount))
        return data, refund

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

    # --- release 2 ---------------------------------------------------------------------------------------
    async def _run_v2(self) -> ReturnOutcome:
        """Returnable quantities across returns (PostgreSQL), several parcels and inspection passes, the refund
        priced cumulatively at what was charged and sent to the original payment, postings in the selling
        entity. docs/returns.md has the rules."""
        if not await self._wait_for_authorization():
            return await self._finish("never_opened", ReturnStage.NEVER_OPENED)
        opened = self.inbox.take(EventType.RETURN_AUTHORIZED)
        assert opened is not None and isinstance(opened.data, ReturnAuthorized)
        authorized = await self._authorize_v2(opened.data)
        over_returned = any(ln.refusal is Refusal.OVER_RETURN for ln in self.lines)
        if not authorized and not over_returned:
            return await self._finish("rejected", ReturnStage.REJECTED)
        if not await self._await_receipt_v2(authorized):
            if not authorized:
                return await self._finish("rejected", ReturnStage.REJECTED)
            await self._close_authorization()  # nothing came back: the authorization is released for others
            self.log.warning("return expired: nothing received in time")
            return await self._finish("expired", ReturnStage.EXPIRED)
        await self._receive_and_inspect_v2()
        if not authorized:  # goods of a refused return came anyway: received and inspected, never refunded
            return await self._finish("rejected", ReturnStage.REJECTED)
        closed = await self._close_authorization()
        if closed.total <= 0:
            self.notes.append("nothing accepted at inspection: no refund")
            return await self._finish("closed_without_refund", ReturnStage.CLOSED_WITHOUT_REFUND)
        if not await self._issue_refund_v2(closed):
            return await self._finish("refund_refused", ReturnStage.REFUND_REFUSED)
        event = await self.inbox.next(EventType.REFUND_SETTLED)
        data, refund = self._record_settlement(event)
        for location, part in sorted(refund.by_location.items()):
            await call(ErpActivities.post_financial,
                       self._posting(f"refund-paid:{location}", FinancialEvent.REFUND_PAID, part, "refund paid",
                                     location_id=location),
                       summary=f"post refund paid {part} {refund.currency}")
        self.cases.stop_clock(SlaKind.REFUND_OVERDUE, by=str(EventType.REFUND_SETTLED))
        self.log.info("refund settled", amount=str(data.amount), refund_id=data.refund_id)
        return await self._finish("refunded", ReturnStage.REFUNDED)

    def _authorization_key(self) -> str:
        return f"{self.workflow_id}:authorization"

    async def _authorize_v2(self, auth: ReturnAuthorized) -> bool:
        """Authorize against the order in PostgreSQL (other returns counted); True if any unit is authorized."""
        self.authorization = auth
        decided = await call(WmsActivities.authorize_return, AuthorizeReturnInput(
            key=self._authorization_key(), return_id=auth.return_id, channel=auth.channel, order_id=auth.order_id,
            lines=[ReturnLineRequest(line_id=ln.line_id, sku=ln.sku, quantity=ln.quantity, reason=ln.reason)
                   for ln in auth.lines],
        ), summary=f"authorize return {auth.return_id} against {auth.channel}/{auth.order_id}")
        self.lines = [
            ReturnLineState(
                line_id=d.line_id, sku=d.sku, requested=d.requested, customer_reason=auth.lines[d.line_no].reason,
                shipped=d.shipped, unit_price=d.unit_price or Decimal(0), authorized=d.authorized,
                refused_reason=d.refused_reason, line_no=d.line_no,
                refusal=Refusal(d.refusal) if d.refusal else None, sale_location_id=d.sale_location_id,
            ) for d in decided.lines
        ]
        authorized = [d for d in decided.lines if d.authorized]
        known = [d for d in decided.lines if d.currency]
        self.currency = (authorized or known)[0].currency if (authorized or known) else None
        self.sale_location = next((d.sale_location_id for d in authorized if d.sale_location_id), None)
        self.payment_id = decided.payment_id
        if self.payment_id is None and decided.shipment_ids:
            # shipment records of release 1.0 name no payment: the captures of the order's shipments do
            found = await call(PosActivities.find_payment, PaymentLookupInput(references=decided.shipment_ids),
                               summary=f"payment of {auth.channel}/{auth.order_id}")
            self.payment_id = found.payment_id
            if found.payment_id is None:
                self.notes.append("no payment found for the order's shipments: the refund is not tied to a payment")
        skus = [ln.sku for ln in self.lines if ln.authorized or ln.refusal is Refusal.OVER_RETURN]
        self.view.skus(skus)
        self.view.locations([auth.return_location_id])
        self.cases.scope(location_ids=[auth.return_location_id], skus=skus)
        over = [ln for ln in self.lines if ln.refusal is Refusal.OVER_RETURN]
        if over:
            self.cases.open_case(CaseKind.OVER_RETURN, summary=(
                f"return {auth.return_id} asked back more than order {auth.order_id} has left to return: "
                + "; ".join(f"line {ln.line_id}: {ln.refused_reason}" for ln in over)),
                details={ln.line_id: ln.refused_reason or "" for ln in over})
        self.log.info("return authorized", lines=len(self.lines), refused=sum(1 for ln in self.lines if ln.refused_reason),
                      units=sum(ln.authorized for ln in self.lines), payment_id=self.payment_id)
        self.stage = ReturnStage.AWAITING_RECEIPT if (authorized or over) else self.stage
        self.window_ends = workflow.now() + self.policy.sla.deadline(SlaKind.RETURN_NOT_RECEIVED)
        if authorized:
            self.cases.start_clock(SlaKind.RETURN_NOT_RECEIVED)
        self._show()
        return bool(authorized)

    async def _await_receipt_v2(self, authorized: bool) -> bool:
        """Wait for a receipt that takes units in: within return_not_received (an authorized return), or within
        the return window without a clock (a refused one, whose goods may come anyway)."""
        while True:
            if authorized:
                if not await self.cases.wait(SlaKind.RETURN_NOT_RECEIVED,
                                             lambda: self.inbox.has(EventType.RETURN_RECEIVED)):
                    return False
            else:
                assert self.window_ends is not None
                try:
                    await workflow.wait_condition(lambda: self.inbox.has(EventType.RETURN_RECEIVED),
                                                  timeout=max(self.window_ends - workflow.now(), timedelta(seconds=1)),
                                                  timeout_summary="return window of a refused return")
                except TimeoutError:
                    return False
            event = self.inbox.take(EventType.RETURN_RECEIVED)
            assert event is not None
            if await self._receive_v2(event):
                return True

    async def _receive_and_inspect_v2(self) -> None:
        """Parcels and inspection passes in any order, until receiving is complete (every authorized unit
        received, or `receipt_grace` after the last receipt, or the return window) and nothing awaits
        inspection. A receipt held is applied before an inspection."""
        grace = self.policy.receipt_grace
        while True:
            received = self.inbox.take(EventType.RETURN_RECEIVED)
            if received is not None:
                await self._receive_v2(received)
                continue
            complete = self.receiving_complete or rules.all_received(self.lines)
            if complete and rules.pending_units(self.lines) == 0:
                return
            inspected = self.inbox.take(EventType.RETURN_INSPECTED)
            if inspected is not None:
                await self._inspect_v2(inspected)
                continue
            timeout: timedelta | None = None
            if not complete:
                assert self.last_receipt_at is not None and self.window_ends is not None
                ends = min(self.last_receipt_at + grace, self.window_ends)
                if ends <= workflow.now():
                    self._receiving_done("receipt grace or return window passed")
                    continue
                timeout = ends - workflow.now()
            try:
                await workflow.wait_condition(
                    lambda: self.inbox.has(EventType.RETURN_RECEIVED, EventType.RETURN_INSPECTED),
                    timeout=timeout, timeout_summary="receipt grace: more parcels may come" if timeout else None)
            except TimeoutError:
                self._receiving_done("receipt grace or return window passed")

    def _receiving_done(self, why: str) -> None:
        self.receiving_complete = True
        missing = sum(max(ln.authorized - ln.received, 0) for ln in self.lines)
        if missing:
            self.notes.append(f"receiving complete ({why}): {missing} authorized units never came back and are "
                              "released at close")
        self.log.info("return receiving complete", why=why, missing=missing)
        self._show()

    async def _receive_v2(self, event: Event) -> bool:
        """Take every unit of one receipt into pending_inspection: the authorized ones on their lines, the rest
        (beyond the authorization, or of a refused return) on its SKU's unauthorized line with an over_return
        case. Units of SKUs the item master does not know cannot enter the ledger: noted. False if nothing
        was taken."""
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
        take, excess = rules.allocate_receipt([ln for ln in self.lines if not ln.unauthorized], counted)
        if excess:
            items = await call(ErpActivities.lookup_items, LookupItemsInput(skus=sorted(excess)),
                               summary=f"look up {len(excess)} SKUs received beyond the authorization")
            unknown = {sku: q for sku, q in excess.items() if sku not in items.items}
            excess = {sku: q for sku, q in excess.items() if sku in items.items}
            if unknown:
                self.notes.append(f"received at {location}, unknown to the item master, not taken into stock: "
                                  + ", ".join(f"{q} x {sku}" for sku, q in sorted(unknown.items())))
        receipt = ReceiptState(location_id=location, received_at=workflow.now(), excess=excess)
        by_id = {ln.line_id: ln for ln in self.lines}
        for sku, qty in sorted(excess.items()):
            line = by_id.get(f"unauthorized:{sku}")
            if line is None:
                sold_by = next((ln.sale_location_id for ln in self.lines if ln.sku == sku and ln.sale_location_id),
                               None)
                line = rules.unauthorized_line(sku, sold_by)
                self.lines.append(line)
                by_id[line.line_id] = line
            take[line.line_id] = take.get(line.line_id, 0) + qty
        if not take:
            self.receipts.append(receipt)
            self.log.warning("receipt with nothing to take in", location_id=location)
            self._show()
            return False
        per_sku_seller: dict[tuple[str, str | None], int] = defaultdict(int)
        for line_id, qty in take.items():
            line = by_id[line_id]
            receipt.units[line.sku] = receipt.units.get(line.sku, 0) + qty
            per_sku_seller[(line.sku, line.sale_location_id)] += qty
        n = sum(1 for r in self.receipts if r.units)
        await call(ErpActivities.post_movement,
                   self._movement(f"return-receipt:{n}", MovementKind.RETURN_RECEIPT,
                                  [MovementLine(sku=sku, location_id=location, quantity=q, sale_location_id=seller)
                                   for (sku, seller), q in sorted(per_sku_seller.items(),
                                                                  key=lambda kv: (kv[0][0], kv[0][1] or ""))],
                                  f"customer return received at {location}"),
                   summary=f"receive {sum(take.values())} returned units at {location}")
        await call(WmsActivities.record_receipt, ReceiptRecord(
            key=f"{self.workflow_id}:receipt:{n}", kind="return", reference=self._return_id(), location_id=location,
            lines=[TaskLine(line_id=line_id, sku=by_id[line_id].sku, quantity=q) for line_id, q in take.items()],
        ), summary=f"record return receipt at {location}")
        pending_before = rules.pending_units(self.lines)
        for line_id, qty in take.items():
            line = by_id[line_id]
            line.received_at[location] = line.received_at.get(location, 0) + qty
        self.receipts.append(receipt)
        self.last_receipt_at = workflow.now()
        locations = [self._authorization().return_location_id, *(r.location_id for r in self.receipts if r.units)]
        self.view.locations(locations)
        self.cases.scope(location_ids=locations, skus=[ln.sku for ln in self.lines if ln.received])
        if excess:
            self.notes.append(f"received beyond the authorization at {location}, taken into pending_inspection "
                              "for ops (not refunded): " + ", ".join(f"{q} x {sku}" for sku, q in sorted(excess.items())))
            self.cases.open_case(CaseKind.OVER_RETURN, summary=(
                f"return {self._return_id()}: units received beyond what is authorized, held in pending_inspection "
                f"at {location}: " + ", ".join(f"{q} x {sku}" for sku, q in sorted(excess.items()))),
                details={sku: str(q) for sku, q in excess.items()})
        self.cases.stop_clock(SlaKind.RETURN_NOT_RECEIVED, by=str(EventType.RETURN_RECEIVED))
        if pending_before == 0:  # units await inspection again: the clock runs from this receipt
            self.cases.restart_clock(SlaKind.INSPECTION_OVERDUE)
        self.stage = ReturnStage.AWAITING_INSPECTION
        self.log.info("return received", location_id=location, units=sum(take.values()),
                      excess=sum(excess.values()))
        self._show()
        return True

    async def _inspect_v2(self, event: Event) -> bool:
        """One inspection pass: disposition what it names out of pending_inspection; the inspection_overdue
        clock stops once nothing awaits inspection."""
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
        await self._post_dispositions(moves, f":{self.inspection_passes}" if self.inspection_passes else "")
        self.inspection_passes += 1
        rules.apply_moves(self.lines, moves)
        pending = rules.pending_units(self.lines)
        if pending == 0:
            self.cases.stop_clock(SlaKind.INSPECTION_OVERDUE, by=str(EventType.RETURN_INSPECTED))
        self.log.info("return inspected", units=sum(m.quantity for m in moves), pending=pending,
                      passes=self.inspection_passes)
        self._show()
        return True

    async def _close_authorization(self) -> CloseReturnResult:
        """Price the refund of the accepted units in PostgreSQL and release the rest of the authorization."""
        accepted = {ln.line_no: ln.accepted for ln in self.lines if ln.authorized and not ln.unauthorized}
        closed = await call(WmsActivities.close_return,
                            CloseReturnInput(key=self._authorization_key(), accepted=accepted),
                            summary=f"close return {self._return_id()}: price the refund, release the rest")
        by_no = {ln.line_no: ln for ln in self.lines if not ln.unauthorized}
        for c in closed.lines:
            if c.line_no in by_no:
                by_no[c.line_no].refund = c.refund
        self._show()
        return closed

    async def _issue_refund_v2(self, closed: CloseReturnResult) -> bool:
        """Refund the priced amount on the original payment (the POS refuses more than it captured: case
        over_capture, nothing posted); SALES_RETURN per selling location. False if refused."""
        amount, currency = closed.total, self.currency or "USD"
        try:
            result = await call(PosActivities.refund_payment, RefundInput(
                key=f"{self.workflow_id}:refund", payment_id=self.payment_id, return_id=self._return_id(),
                amount=amount, currency=currency,
            ), summary=f"refund {amount} {currency} on {self.payment_id}")
        except ActivityError as err:
            if refusal_type(err) != ErrorType.OVER_CAPTURE:
                raise
            why = str(err.cause.message if isinstance(err.cause, ApplicationError) else err)
            self.notes.append(f"refund of {amount} {currency} refused by the payment: {why}")
            self.cases.open_case(CaseKind.OVER_CAPTURE, summary=(
                f"return {self._return_id()}: refund of {amount} {currency} refused on payment {self.payment_id}: "
                f"{why}"), details={"amount": str(amount), "payment_id": self.payment_id or ""})
            self.log.warning("refund refused", amount=str(amount), payment_id=self.payment_id)
            return False
        fallback = self.sale_location or self._authorization().return_location_id
        by_location: dict[str, Decimal] = defaultdict(Decimal)
        for c in closed.lines:
            if c.refund > 0:
                by_location[c.sale_location_id or fallback] += c.refund
        self.refund = RefundState(amount=amount, currency=currency, refund_reference=result.refund_reference,
                                  issued_at=workflow.now(), payment_id=self.payment_id, by_location=dict(by_location))
        for location, part in sorted(by_location.items()):
            await call(ErpActivities.post_financial,
                       self._posting(f"sales-return:{location}", FinancialEvent.SALES_RETURN, part,
                                     "sales return: refund owed for accepted units", location_id=location),
                       summary=f"post sales return {part} {currency}")
        self.stage = ReturnStage.AWAITING_REFUND_SETTLEMENT
        self.cases.start_clock(SlaKind.REFUND_OVERDUE)
        self.log.info("refund issued", amount=str(amount), reference=result.refund_reference,
                      payment_id=self.payment_id)
        self._show()
        return True

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
        await self._post_dispositions(moves, "")
        rules.apply_moves(self.lines, moves)
        self.cases.stop_clock(SlaKind.INSPECTION_OVERDUE, by=str(EventType.RETURN_INSPECTED))
        self.cases.start_clock(SlaKind.REFUND_OVERDUE)
        self.log.info("return inspected", units=sum(m.quantity for m in moves),
                      pending=sum(ln.pending_inspection for ln in self.lines))
        self._show()
        return True

    async def _post_dispositions(self, moves: list[Move], suffix: str) -> None:
        """DISPOSITION per location (and WRITE_OFF of the damaged units); `suffix` tells apart the keys of a
        later inspection pass (release 2; "" for the first, as release 1.0 keyed it)."""
        by_location: dict[str, dict[tuple[str, Disposition], int]] = defaultdict(lambda: defaultdict(int))
        for m in moves:
            by_location[m.location_id][(m.sku, m.disposition)] += m.quantity
        for location, qtys in sorted(by_location.items()):
            await call(ErpActivities.post_movement, self._movement(
                f"disposition:{location}{suffix}", MovementKind.DISPOSITION,
                [MovementLine(sku=sku, location_id=location, quantity=q, to_bucket=DISPOSITION_BUCKET[d])
                 for (sku, d), q in sorted(qtys.items())],
                "returned units inspected"),
                summary=f"disposition {sum(qtys.values())} returned units at {location}")
            damaged = {sku: q for (sku, d), q in sorted(qtys.items()) if d is Disposition.DAMAGED}
            if damaged:
                await call(ErpActivities.post_movement, self._movement(
                    f"write-off:{location}{suffix}", MovementKind.WRITE_OFF,
                    [MovementLine(sku=sku, location_id=location, quantity=q) for sku, q in damaged.items()],
                    "returned units damaged: written off"),
                    summary=f"write off {sum(damaged.values())} damaged returned units at {location}")

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

    def _posting(self, step: str, event: FinancialEvent, amount: Decimal, memo: str,
                 location_id: str | None = None) -> FinancialPosting:
        info = workflow.info()
        return FinancialPosting(
            key=f"{self.workflow_id}:{step}", event=event,
            location_id=location_id or self.sale_location or self._authorization().return_location_id, amount=amount,
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

"""ReturnToRefund: a customer return from authorization to refund paid (workflow ID `return:{return_id}`).

The rules are release 2's (docs/returns.md, domain/returns.py): `return.authorized` is decided against the order
in PostgreSQL (other returns counted; an over-return is refused with an `over_return` case, its goods still
received); parcels (`return.received`, at any known location) go into `pending_inspection`, units beyond the
authorization on an unauthorized line; inspection passes disposition them (`restock`, `damaged` then written
off, `vendor_return`); once receiving is complete and nothing awaits inspection the refund is priced
cumulatively at what was charged, sent to the original payment (SALES_RETURN per selling location) and
`refund.settled` posts REFUND_PAID. SLA clocks: return_not_received (its breach expires the return),
inspection_overdue, refund_overdue. Never authorized within `policy.open_timeout`: `never_opened`.

Release 3 (docs/returns.md, "Release 3"): the same rules and ledger keys on `workflows.process.Process`, its
state one pydantic model (`ReturnProgress`); the reads and writes of one step are local activities of one
workflow task (one action), and a long history continues as new. A run started on release 1.0 or 2.0 is
handed to workflows/release_2/return_to_refund.py for its whole life.
"""
from collections import defaultdict
from datetime import timedelta
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
    from domain.inventory import Bucket, MovementKind, MovementLine
    from domain.journal import FinancialEvent
    from domain.process import ProcessInput
    from domain.returns import (
        Move,
        ReceiptState,
        RefundState,
        Refusal,
        ReturnLineState,
        ReturnOutcome,
        ReturnProgress,
        ReturnStage,
        ReturnState,
    )
    from domain.sla import CaseKind, SlaKind
    from workflows.calls import call_local, refusal_type
    from workflows.common import on_release_3
    from workflows.process import Process, Shown, markdown_table
    from workflows.release_2 import return_to_refund as release_2

DISPOSITION_BUCKET = {
    Disposition.RESTOCK: Bucket.AVAILABLE,
    Disposition.DAMAGED: Bucket.DAMAGED,
    Disposition.VENDOR_RETURN: Bucket.VENDOR_RETURN,
}


@workflow.defn(name="ReturnToRefund")
class ReturnToRefund(Process):
    process_type = "ReturnToRefund"

    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        self.legacy = None if on_release_3() else release_2.ReturnToRefund(input)
        if self.legacy is not None:
            return
        super().__init__(input)
        self.progress = ReturnProgress.model_validate(input.resume) if input.resume else ReturnProgress()
        self._scope()  # a resumed run's scope

    # --- handlers --------------------------------------------------------------------------------------
    @workflow.signal(name="event", description="A business event of this return (return.authorized, "
                     "return.received, return.inspected, refund.settled); held until its turn.")
    def event(self, event: Event) -> None:
        if self.legacy is not None:
            return self.legacy.event(event)
        if event.type is EventType.RETURN_AUTHORIZED and self.progress.authorization is not None:
            if event.event_id not in self.inbox.seen_ids:
                self.inbox.seen_ids.add(event.event_id)
                self._ignore_authorization(event)
            return
        self.inbox.offer(event)

    @workflow.query(name="state", description="The return: stage, lines with units by state, receipts, refund, "
                    "exception cases, workflow ID.")
    def state(self) -> ReturnState:
        if self.legacy is not None:
            return self.legacy.state()
        p = self.progress
        auth = p.authorization
        return ReturnState(
            workflow_id=self.workflow_id, business_key=self.input.business_key,
            return_id=auth.return_id if auth else None, order_id=auth.order_id if auth else None,
            channel=auth.channel if auth else self.input.channel, stage=p.stage,
            return_location_id=auth.return_location_id if auth else None, currency=p.currency,
            lines=[ln.summary() for ln in p.lines], receipts=p.receipts, inspection_excess=p.inspection_excess,
            refund=p.refund, notes=p.notes, exception_cases=[ref.model_dump(mode="json") for ref in self.cases.refs()],
            held_events=[str(e.type) for e in self.inbox.pending],
        )

    def shown(self) -> Shown:
        p = self.progress
        skus = [ln.sku for ln in p.lines if ln.authorized or ln.refusal is Refusal.OVER_RETURN]
        return Shown(stage=str(p.stage), skus=skus, location_ids=self._locations(), details=self._details())

    # --- the process -----------------------------------------------------------------------------------
    @workflow.run
    async def run(self, input: ProcessInput) -> ReturnOutcome:
        if self.legacy is not None:
            return await self.legacy.run(input)
        p = self.progress
        if p.authorization is None:  # a resumed run is past its authorization
            if not self.inbox.has(EventType.RETURN_AUTHORIZED):
                self.refresh()  # opened by an early event: shown awaiting the authorization meanwhile
            opened = await self.opening(EventType.RETURN_AUTHORIZED, resume=p)
            if opened is None:
                self.log.warning("return never authorized", held=[str(e.type) for e in self.inbox.pending])
                return await self._finish("never_opened", ReturnStage.NEVER_OPENED)
            assert isinstance(opened.data, ReturnAuthorized)
            for other in [e for e in self.inbox.pending if e.type is EventType.RETURN_AUTHORIZED]:
                self.inbox.remove(other)  # came in the same task as this one, before it was taken
                self._ignore_authorization(other)
            await self._authorize(opened.data)
            if not self._authorized() and not any(ln.refusal is Refusal.OVER_RETURN for ln in p.lines):
                return await self._finish("rejected", ReturnStage.REJECTED)
        authorized = self._authorized()
        if not any(r.units for r in p.receipts) and not await self._await_receipt(authorized):
            if not authorized:
                return await self._finish("rejected", ReturnStage.REJECTED)
            await self._close_authorization()  # nothing came back: the authorization is released for others
            self.log.warning("return expired: nothing received in time")
            return await self._finish("expired", ReturnStage.EXPIRED)
        await self._receive_and_inspect()
        if not authorized:  # goods of a refused return came anyway: received and inspected, never refunded
            return await self._finish("rejected", ReturnStage.REJECTED)
        closed = await self._close_authorization()
        if closed.total <= 0:
            p.notes.append("nothing accepted at inspection: no refund")
            return await self._finish("closed_without_refund", ReturnStage.CLOSED_WITHOUT_REFUND)
        if not await self._issue_refund(closed):
            return await self._finish("refund_refused", ReturnStage.REFUND_REFUSED)
        self.refresh()
        await self._settle(await self.inbox.next(EventType.REFUND_SETTLED))
        return await self._finish("refunded", ReturnStage.REFUNDED)

    async def _finish(self, outcome: str, stage: ReturnStage) -> ReturnOutcome:
        p = self.progress
        p.stage = stage
        # local: in the task of the last step's local work (the settlement's postings, the close of the
        # authorization), one action with it; after the open timeout alone, as a remote one would be
        await self.close(outcome, str(stage), self.state(), local=True)
        return ReturnOutcome(
            workflow_id=self.workflow_id, outcome=outcome, stage=stage,
            received_units=sum(ln.received for ln in p.lines), accepted_units=sum(ln.accepted for ln in p.lines),
            refund_amount=p.refund.amount if p.refund else None, currency=p.currency,
        )

    async def _authorize(self, auth: ReturnAuthorized) -> None:
        """Authorize against the order in PostgreSQL (other returns counted), under the order's row lock."""
        p = self.progress
        p.authorization = auth
        # local: idempotent by the authorization's key and short (one row-locked statement), in one task with the
        # payment lookup that follows when the order's shipment records name no payment
        decided = await call_local(WmsActivities.authorize_return, AuthorizeReturnInput(
            key=self._authorization_key(), return_id=auth.return_id, channel=auth.channel, order_id=auth.order_id,
            lines=[ReturnLineRequest(line_id=ln.line_id, sku=ln.sku, quantity=ln.quantity, reason=ln.reason)
                   for ln in auth.lines],
        ), summary=f"authorize return {auth.return_id} against {auth.channel}/{auth.order_id}")
        p.lines = [
            ReturnLineState(
                line_id=d.line_id, sku=d.sku, requested=d.requested, customer_reason=auth.lines[d.line_no].reason,
                shipped=d.shipped, unit_price=d.unit_price or Decimal(0), authorized=d.authorized,
                refused_reason=d.refused_reason, line_no=d.line_no,
                refusal=Refusal(d.refusal) if d.refusal else None, sale_location_id=d.sale_location_id,
            ) for d in decided.lines
        ]
        authorized = [d for d in decided.lines if d.authorized]
        known = [d for d in decided.lines if d.currency]
        p.currency = (authorized or known)[0].currency if (authorized or known) else None
        p.sale_location = next((d.sale_location_id for d in authorized if d.sale_location_id), None)
        p.payment_id = decided.payment_id
        if p.payment_id is None and decided.shipment_ids:
            # shipment records of release 1.0 name no payment: the captures of the order's shipments do (a read)
            found = await call_local(PosActivities.find_payment, PaymentLookupInput(references=decided.shipment_ids),
                                     summary=f"payment of {auth.channel}/{auth.order_id}")
            p.payment_id = found.payment_id
            if found.payment_id is None:
                p.notes.append("no payment found for the order's shipments: the refund is not tied to a payment")
        self._scope()
        over = [ln for ln in p.lines if ln.refusal is Refusal.OVER_RETURN]
        if over:
            self.cases.open_case(CaseKind.OVER_RETURN, summary=(
                f"return {auth.return_id} asked back more than order {auth.order_id} has left to return: "
                + "; ".join(f"line {ln.line_id}: {ln.refused_reason}" for ln in over)),
                details={ln.line_id: ln.refused_reason or "" for ln in over})
        self.log.info("return authorized", lines=len(p.lines), refused=sum(1 for ln in p.lines if ln.refused_reason),
                      units=sum(ln.authorized for ln in p.lines), payment_id=p.payment_id)
        if authorized or over:
            p.stage = ReturnStage.AWAITING_RECEIPT
        p.window_ends = workflow.now() + self.policy.sla.deadline(SlaKind.RETURN_NOT_RECEIVED)
        if authorized:
            self.cases.start_clock(SlaKind.RETURN_NOT_RECEIVED)

    async def _await_receipt(self, authorized: bool) -> bool:
        """Wait for a receipt that takes units in: within return_not_received (an authorized return), or within
        the return window without a clock (a refused one, whose goods may come anyway)."""
        p = self.progress
        while True:
            self.refresh()  # before each wait, not after each step: held events applied at once are one upsert
            if authorized:
                if not await self.cases.wait(SlaKind.RETURN_NOT_RECEIVED,
                                             lambda: self.inbox.has(EventType.RETURN_RECEIVED)):
                    return False
            else:
                assert p.window_ends is not None
                try:
                    await workflow.wait_condition(lambda: self.inbox.has(EventType.RETURN_RECEIVED),
                                                  timeout=max(p.window_ends - workflow.now(), timedelta(seconds=1)),
                                                  timeout_summary="return window of a refused return")
                except TimeoutError:
                    return False
            event = self.inbox.take(EventType.RETURN_RECEIVED)
            assert event is not None
            if await self._receive(event):
                return True
            await self.checkpoint(p)

    async def _receive_and_inspect(self) -> None:
        """Parcels and inspection passes in any order, until receiving is complete (every authorized unit
        received, or `receipt_grace` after the last receipt, or the return window) and nothing awaits
        inspection. A receipt held is applied before an inspection. Continues as new, when the history is
        long, between events."""
        p = self.progress
        grace = self.policy.receipt_grace
        while True:
            await self.checkpoint(p)
            received = self.inbox.take(EventType.RETURN_RECEIVED)
            if received is not None:
                await self._receive(received)
                continue
            complete = p.receiving_complete or rules.all_received(p.lines)
            if complete and rules.pending_units(p.lines) == 0:
                return
            inspected = self.inbox.take(EventType.RETURN_INSPECTED)
            if inspected is not None:
                await self._inspect(inspected)
                continue
            timeout: timedelta | None = None
            if not complete:
                assert p.last_receipt_at is not None and p.window_ends is not None
                ends = min(p.last_receipt_at + grace, p.window_ends)
                if ends <= workflow.now():
                    self._receiving_done("receipt grace or return window passed")
                    continue
                timeout = ends - workflow.now()
            self.refresh()
            try:
                await workflow.wait_condition(
                    lambda: self.inbox.has(EventType.RETURN_RECEIVED, EventType.RETURN_INSPECTED),
                    timeout=timeout, timeout_summary="receipt grace: more parcels may come" if timeout else None)
            except TimeoutError:
                self._receiving_done("receipt grace or return window passed")

    def _receiving_done(self, why: str) -> None:
        p = self.progress
        p.receiving_complete = True
        missing = sum(max(ln.authorized - ln.received, 0) for ln in p.lines)
        if missing:
            p.notes.append(f"receiving complete ({why}): {missing} authorized units never came back and are "
                           "released at close")
        self.log.info("return receiving complete", why=why, missing=missing)

    async def _receive(self, event: Event) -> bool:
        """Take every unit of one receipt into pending_inspection: the authorized ones on their lines, the rest
        (beyond the authorization, or of a refused return) on its SKU's unauthorized line with an over_return
        case. Units of SKUs the item master does not know cannot enter the ledger: noted. False if nothing
        was taken.

        The reads, the RETURN_RECEIPT posting and the WMS receipt record are local activities of one workflow
        task (one action): the writes are short and idempotent by key."""
        p = self.progress
        data = event.data
        assert isinstance(data, ReturnReceived)
        location = data.location_id
        found = await call_local(ErpActivities.lookup_locations, LookupLocationsInput(location_ids=[location]),
                                 summary=f"look up location {location}")
        if location not in found.locations:
            p.notes.append(f"return.received {event.event_id} refused: unknown location {location}")
            self.log.warning("receipt at an unknown location refused", location_id=location)
            return False
        counted: dict[str, int] = {}
        for ln in data.lines:
            counted[ln.sku] = counted.get(ln.sku, 0) + ln.quantity
        take, excess = rules.allocate_receipt([ln for ln in p.lines if not ln.unauthorized], counted)
        if excess:
            items = await call_local(ErpActivities.lookup_items, LookupItemsInput(skus=sorted(excess)),
                                     summary=f"look up {len(excess)} SKUs received beyond the authorization")
            unknown = {sku: q for sku, q in excess.items() if sku not in items.items}
            excess = {sku: q for sku, q in excess.items() if sku in items.items}
            if unknown:
                p.notes.append(f"received at {location}, unknown to the item master, not taken into stock: "
                               + ", ".join(f"{q} x {sku}" for sku, q in sorted(unknown.items())))
        receipt = ReceiptState(location_id=location, received_at=workflow.now(), excess=excess)
        by_id = {ln.line_id: ln for ln in p.lines}
        for sku, qty in sorted(excess.items()):
            line = by_id.get(f"unauthorized:{sku}")
            if line is None:
                sold_by = next((ln.sale_location_id for ln in p.lines if ln.sku == sku and ln.sale_location_id), None)
                line = rules.unauthorized_line(sku, sold_by)
                p.lines.append(line)
                by_id[line.line_id] = line
            take[line.line_id] = take.get(line.line_id, 0) + qty
        if not take:
            p.receipts.append(receipt)
            self.log.warning("receipt with nothing to take in", location_id=location)
            return False
        per_sku_seller: dict[tuple[str, str | None], int] = defaultdict(int)
        for line_id, qty in take.items():
            line = by_id[line_id]
            receipt.units[line.sku] = receipt.units.get(line.sku, 0) + qty
            per_sku_seller[(line.sku, line.sale_location_id)] += qty
        n = sum(1 for r in p.receipts if r.units)
        await call_local(ErpActivities.post_movement, self.movement(
            f"return-receipt:{n}", MovementKind.RETURN_RECEIPT,
            [MovementLine(sku=sku, location_id=location, quantity=q, sale_location_id=seller)
             for (sku, seller), q in sorted(per_sku_seller.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))],
            f"customer return received at {location}"),
            summary=f"receive {sum(take.values())} returned units at {location}")
        await call_local(WmsActivities.record_receipt, ReceiptRecord(
            key=f"{self.workflow_id}:receipt:{n}", kind="return", reference=self._return_id(), location_id=location,
            lines=[TaskLine(line_id=line_id, sku=by_id[line_id].sku, quantity=q) for line_id, q in take.items()],
        ), summary=f"record return receipt at {location}")
        pending_before = rules.pending_units(p.lines)
        for line_id, qty in take.items():
            line = by_id[line_id]
            line.received_at[location] = line.received_at.get(location, 0) + qty
        p.receipts.append(receipt)
        p.last_receipt_at = workflow.now()
        self._scope()
        if excess:
            p.notes.append(f"received beyond the authorization at {location}, taken into pending_inspection "
                           "for ops (not refunded): " + ", ".join(f"{q} x {sku}" for sku, q in sorted(excess.items())))
            self.cases.open_case(CaseKind.OVER_RETURN, summary=(
                f"return {self._return_id()}: units received beyond what is authorized, held in pending_inspection "
                f"at {location}: " + ", ".join(f"{q} x {sku}" for sku, q in sorted(excess.items()))),
                details={sku: str(q) for sku, q in excess.items()})
        self.cases.stop_clock(SlaKind.RETURN_NOT_RECEIVED, by=str(EventType.RETURN_RECEIVED))
        if pending_before == 0:  # units await inspection again: the clock runs from this receipt
            self.cases.restart_clock(SlaKind.INSPECTION_OVERDUE)
        p.stage = ReturnStage.AWAITING_INSPECTION
        self.log.info("return received", location_id=location, units=sum(take.values()), excess=sum(excess.values()))
        return True

    async def _inspect(self, event: Event) -> bool:
        """One inspection pass: disposition what it names out of pending_inspection; the inspection_overdue
        clock stops once nothing awaits inspection. False if it named nothing pending."""
        p = self.progress
        data = event.data
        assert isinstance(data, ReturnInspected)
        moves, excess = rules.allocate_inspection(p.lines, [(ln.sku, ln.quantity, ln.disposition) for ln in data.lines])
        for sku, q in excess.items():
            p.inspection_excess[sku] = p.inspection_excess.get(sku, 0) + q
        if excess:
            p.notes.append("inspected beyond what is pending inspection, ignored: "
                           + ", ".join(f"{q} x {sku}" for sku, q in sorted(excess.items())))
        if not moves:
            self.log.warning("inspection named nothing pending inspection")
            return False
        await self._post_dispositions(moves, f":{p.inspection_passes}" if p.inspection_passes else "")
        p.inspection_passes += 1
        rules.apply_moves(p.lines, moves)
        pending = rules.pending_units(p.lines)
        if pending == 0:
            self.cases.stop_clock(SlaKind.INSPECTION_OVERDUE, by=str(EventType.RETURN_INSPECTED))
        self.log.info("return inspected", units=sum(m.quantity for m in moves), pending=pending,
                      passes=p.inspection_passes)
        return True

    async def _post_dispositions(self, moves: list[Move], suffix: str) -> None:
        """DISPOSITION per location (and WRITE_OFF of the damaged units); `suffix` tells apart the keys of a
        later inspection pass. Local activities: short postings, idempotent by key, all of one pass in one task
        (and, when the pass ends the inspection, with the close and the refund: one action)."""
        by_location: dict[str, dict[tuple[str, Disposition], int]] = defaultdict(lambda: defaultdict(int))
        for m in moves:
            by_location[m.location_id][(m.sku, m.disposition)] += m.quantity
        for location, qtys in sorted(by_location.items()):
            await call_local(ErpActivities.post_movement, self.movement(
                f"disposition:{location}{suffix}", MovementKind.DISPOSITION,
                [MovementLine(sku=sku, location_id=location, quantity=q, to_bucket=DISPOSITION_BUCKET[d])
                 for (sku, d), q in sorted(qtys.items())],
                "returned units inspected"),
                summary=f"disposition {sum(qtys.values())} returned units at {location}")
            damaged = {sku: q for (sku, d), q in sorted(qtys.items()) if d is Disposition.DAMAGED}
            if damaged:
                await call_local(ErpActivities.post_movement, self.movement(
                    f"write-off:{location}{suffix}", MovementKind.WRITE_OFF,
                    {(sku, location): q for sku, q in damaged.items()}, "returned units damaged: written off"),
                    summary=f"write off {sum(damaged.values())} damaged returned units at {location}")

    async def _close_authorization(self) -> CloseReturnResult:
        """Price the refund of the accepted units in PostgreSQL and release the rest of the authorization (a
        local activity, idempotent by the authorization's key, in the task of the last inspection pass)."""
        p = self.progress
        accepted = {ln.line_no: ln.accepted for ln in p.lines if ln.authorized and not ln.unauthorized}
        closed = await call_local(WmsActivities.close_return,
                                  CloseReturnInput(key=self._authorization_key(), accepted=accepted),
                                  summary=f"close return {self._return_id()}: price the refund, release the rest")
        by_no = {ln.line_no: ln for ln in p.lines if not ln.unauthorized}
        for c in closed.lines:
            if c.line_no in by_no:
                by_no[c.line_no].refund = c.refund
        return closed

    async def _issue_refund(self, closed: CloseReturnResult) -> bool:
        """Refund the priced amount on the original payment (the POS refuses more than it captured: case
        over_capture, nothing posted); SALES_RETURN per selling location. False if refused.

        Local activities, in the task of the close: the refund is idempotent by its key (`{workflow ID}:refund`),
        the postings by theirs."""
        p = self.progress
        amount, currency = closed.total, p.currency or "USD"
        try:
            result = await call_local(PosActivities.refund_payment, RefundInput(
                key=f"{self.workflow_id}:refund", payment_id=p.payment_id, return_id=self._return_id(),
                amount=amount, currency=currency,
            ), summary=f"refund {amount} {currency} on {p.payment_id}")
        except (ActivityError, ApplicationError) as err:  # a local activity's refusal is the ApplicationError itself
            if refusal_type(err) != ErrorType.OVER_CAPTURE:
                raise
            cause = err.cause if isinstance(err, ActivityError) else err
            why = cause.message if isinstance(cause, ApplicationError) else str(err)
            p.notes.append(f"refund of {amount} {currency} refused by the payment: {why}")
            self.cases.open_case(CaseKind.OVER_CAPTURE, summary=(
                f"return {self._return_id()}: refund of {amount} {currency} refused on payment {p.payment_id}: "
                f"{why}"), details={"amount": str(amount), "payment_id": p.payment_id or ""})
            self.log.warning("refund refused", amount=str(amount), payment_id=p.payment_id)
            return False
        fallback = p.sale_location or self._authorization().return_location_id
        by_location: dict[str, Decimal] = defaultdict(Decimal)
        for c in closed.lines:
            if c.refund > 0:
                by_location[c.sale_location_id or fallback] += c.refund
        p.refund = RefundState(amount=amount, currency=currency, refund_reference=result.refund_reference,
                               issued_at=workflow.now(), payment_id=p.payment_id, by_location=dict(by_location))
        for location, part in sorted(by_location.items()):
            await call_local(ErpActivities.post_financial,
                             self._posting(f"sales-return:{location}", FinancialEvent.SALES_RETURN, part,
                                           "sales return: refund owed for accepted units", location_id=location),
                             summary=f"post sales return {part} {currency}")
        p.stage = ReturnStage.AWAITING_REFUND_SETTLEMENT
        self.cases.start_clock(SlaKind.REFUND_OVERDUE)
        self.log.info("refund issued", amount=str(amount), reference=result.refund_reference, payment_id=p.payment_id)
        return True

    async def _settle(self, event: Event) -> None:
        """`refund.settled`: REFUND_PAID per selling location (local activities: several postings of one task,
        idempotent by key), cleared at the amount issued."""
        p = self.progress
        data = event.data
        assert isinstance(data, RefundSettled) and p.refund is not None
        refund = p.refund
        refund.refund_id, refund.settled_amount, refund.settled_at = data.refund_id, data.amount, workflow.now()
        if data.amount != refund.amount or data.currency != refund.currency:
            p.notes.append(f"refund.settled {data.amount} {data.currency} differs from the refund issued "
                           f"({refund.amount} {refund.currency}); refunds payable cleared at the amount issued")
            self.log.warning("refund settled with another amount", settled=str(data.amount), issued=str(refund.amount))
        for location, part in sorted(refund.by_location.items()):
            await call_local(ErpActivities.post_financial,
                             self._posting(f"refund-paid:{location}", FinancialEvent.REFUND_PAID, part, "refund paid",
                                           location_id=location),
                             summary=f"post refund paid {part} {refund.currency}")
        self.cases.stop_clock(SlaKind.REFUND_OVERDUE, by=str(EventType.REFUND_SETTLED))
        self.log.info("refund settled", amount=str(data.amount), refund_id=data.refund_id)

    # --- helpers ---------------------------------------------------------------------------------------
    def _ignore_authorization(self, event: Event) -> None:
        """Another authorization for an open return (not a redelivery: that has the same event_id)."""
        self.progress.notes.append(f"return.authorized {event.event_id} ignored: the return is already authorized")

    def _authorized(self) -> bool:
        return any(ln.authorized for ln in self.progress.lines)

    def _authorization(self) -> ReturnAuthorized:
        assert self.progress.authorization is not None
        return self.progress.authorization

    def _return_id(self) -> str:
        return self._authorization().return_id

    def _authorization_key(self) -> str:
        return f"{self.workflow_id}:authorization"

    def _locations(self) -> list[str]:
        """The return location and every location a parcel was taken in at."""
        auth = self.progress.authorization
        if auth is None:
            return []
        return [auth.return_location_id, *(r.location_id for r in self.progress.receipts if r.units)]

    def _scope(self) -> None:
        """What the return touches, for the cases it opens: its locations, the SKUs authorized (or over-returned)
        and received."""
        p = self.progress
        self.cases.scope(location_ids=self._locations(), skus=[
            ln.sku for ln in p.lines if ln.authorized or ln.refusal is Refusal.OVER_RETURN or ln.received])

    def _posting(self, step: str, event: FinancialEvent, amount: Decimal, memo: str,
                 location_id: str | None = None) -> FinancialPosting:
        p = self.progress
        info = workflow.info()
        return FinancialPosting(
            key=f"{self.workflow_id}:{step}", event=event,
            location_id=location_id or p.sale_location or self._authorization().return_location_id, amount=amount,
            currency=p.refund.currency if p.refund else (p.currency or "USD"),
            memo=f"return {self._return_id()}: {memo}", workflow_id=info.workflow_id, run_id=info.run_id,
            reference=self._return_id(),
        )

    def _details(self) -> str:
        p = self.progress
        if not p.lines:
            return ""
        headers, rows = rules.details_table(p.lines)
        text = markdown_table(headers, rows)
        if p.refund is not None:
            text += f"\n\nRefund: {p.refund.amount} {p.refund.currency}" + (
                f", settled {p.refund.settled_amount}" if p.refund.settled_amount is not None else
                ", awaiting refund.settled")
        if p.notes:
            text += "\n\nNotes: " + "; ".join(p.notes[-5:])
        if self.inbox.pending:
            text += "\n\nHeld: " + ", ".join(str(e.type) for e in self.inbox.pending)
        return text

"""Transfer: stock from one location to another, through in_transit, with variances handled.

Workflow ID `transfer:{transfer_id}`, business key the transfer_id. Events arrive on the `event` signal
(signal-with-start, so an early `transfer.shipped` or `transfer.received` starts the process and is held
until `transfer.requested` opens it; a redelivered event_id is applied once).

1. `transfer.requested`: lines converted to EA with the item master (unknown SKU or unit: that line is
   refused, with its reason); both locations must be known and differ. What the source has free is reserved
   (RESERVE); what it cannot spare is reported per line, and the transfer goes ahead with the rest or is
   refused whole (`input.policy.partial`). The WMS transfer shipment is created for what was reserved. The
   `transfer_ship_overdue` clock starts.
2. `transfer.shipped`: PICK then TRANSFER_SHIP of at most what is reserved per SKU (picked at the source ->
   in_transit held on the destination; the ledger's journal moves the value from inventory to inventory in
   transit, and across legal entities posts intercompany receivable at the source and payable at the
   destination). Reserved units not shipped are RELEASEd. The ship clock stops; `transfer_overdue` starts.
3. `transfer.received` (one or several; they add up): TRANSFER_RECEIPT in_transit -> available at the
   destination for what was still in transit, the WMS receipt is recorded, and units beyond what was in
   transit are an overage, taken into available at once (ADJUST available +n, reason `receipt_overage`).
   The first receipt stops `transfer_overdue`.
   When is a shortage final? As soon as every shipped unit has arrived there is none and receiving is final
   at once. Otherwise receiving becomes final `input.policy.receipt_grace` (default 24 h, setting
   `RETAILFLOW_TRANSFER_RECEIPT_GRACE`, recorded in the process input when it starts) after the last
   receipt with no further receipt (state: `receipt_grace_until`); what is then still in transit is written
   off as shrink in transit (ADJUST in_transit -n at the destination, reason `shrink_in_transit`: Dr shrink,
   Cr inventory in transit, booked by the destination's legal entity, which owned the units since shipment).
   Any short or over opens one `receipt_variance` case with the per-SKU figures, and the process ends.
   A receipt after the process has ended finds it closed (dispatch answers it as a duplicate); ops settles
   such late units through the variance case.

Ops update `cancel` (with a validator): before shipment it releases the reservation and ends the process;
once shipped (or with a shipment notice already held) it is refused with the reason.
If `transfer.requested` never comes within `input.policy.open_timeout`, the process ends as `expired`.

Release 2 (a run started on release 2, `self.v2`; the 1.0 path above is kept verbatim for runs in flight;
rationale and examples in docs/transfers.md). Steps 2 and 3 become one loop over notices and receipts in
arrival order, any number of each, in any order:
- Each `transfer.shipped` is a truck (`state.shipments`): PICK + TRANSFER_SHIP of at most what is still reserved
  and unshipped (steps `pick:{from}:{n}`, `ship:{from}:{to}:{n}`, n = truck number). The rest stays reserved.
  A notice beyond what is still reserved first reserves more of what was requested, as far as the source has it
  free (`reserve:{from}:{n}`), e.g. an earlier truck whose notice was overtaken by the `complete` one.
- Shipping is final when a notice says `complete: true` (optional field, default false: "the last truck"),
  when nothing is left reserved, or `input.policy.ship_grace` (default 24 h, `RETAILFLOW_TRANSFER_SHIP_GRACE`,
  recorded in the process input) after the last notice with no further notice (`state.ship_grace_until`).
  Then the unshipped rest is RELEASEd (`release:{from}`).
- A receipt takes out of in_transit what is there. Beyond that, while shipping is not final, it is *held* up to
  what is still reserved and unshipped (recorded in `state.receipts[].held` and the line's `held`, not posted:
  the units are still reserved at the source) and the next notice matches it (TRANSFER_RECEIPT `match:{n}`
  right after shipping it). What no later truck could explain is an overage at once (`overage:{event_id}`);
  what is still held when shipping becomes final is one then (`overage:held`). A later notice that ships units
  a receipt took in as overage undoes it (ADJUST in_transit -n, `overage-explained:{n}`): no truck the ledger
  ships ever ends as an overage, and network units change only by a genuine overage or shrink, each with the
  `receipt_variance` case.
- Receiving is final once shipping is final and nothing is in transit, or `receipt_grace` after the later of the
  last receipt and the last notice (a truck notified after the last receipt gets the grace from its notice);
  before any receipt it waits for one, as 1.0. Shortage written off and the variance case as 1.0.
- SLA clocks: `transfer_ship_overdue` runs from the request to the first notice (a receipt before any notice
  leaves it running: the goods came, but the WMS has not said what shipped); `transfer_overdue` from the first
  notice that ships something to the first receipt (a receipt before it: it never starts). Later trucks are
  bounded by the ship grace and the receipt grace instead: a truck that never arrives ends as shrink with the
  variance case, never waits unseen.
- `cancel` is refused once a notice or a receipt is held or applied (goods are on the road or arrived).
"""
from collections.abc import Mapping
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.erp import ErpActivities
    from activities.wms import WmsActivities
    from adapters.erp import AvailabilityInput, LookupItemsInput, LookupLocationsInput
    from adapters.wms import ReceiptRecord, TaskLine, TransferShipmentInput
    from domain.errors import ErrorType
    from domain.events import Event, EventType, TransferReceived, TransferRequested, TransferShipped
    from domain.inventory import Bucket, MovementKind, MovementLine, MovementRequest
    from domain.process import ProcessInput
    from domain.sla import CaseKind, SlaKind
    from domain.transfer import (
        RECEIPT_OVERAGE,
        SHRINK_IN_TRANSIT,
        CancelRequest,
        ReceiptNote,
        RefusedLine,
        ShipmentNote,
        TransferLine,
        TransferOutcome,
        TransferStage,
        TransferState,
        all_reserved_shipped,
        apply_notice,
        apply_receipt,
        apply_shipping_final,
        cancel_refusal,
        describe_variance,
        details_markdown,
        outstanding,
        plan_extra_reserve,
        plan_notice,
        plan_receipt,
        plan_receipt_v2,
        plan_request,
        plan_reservation,
        plan_shipment,
        plan_shipping_final,
        sum_by_sku,
        variance,
    )
    from workflows.release_2.calls import call, refusal_type
    from workflows.release_2.common import on_release_2
    from workflows.release_2.process import Inbox, ProcessLog, ProcessView, enter_closed
    from workflows.release_2.sla import ProcessCases

RESERVE_ATTEMPTS = 3  # re-read availability after a lost race for stock, then give up on what is gone


# (release 2.0 implementation of Transfer: its @workflow.defn is the entry in workflows/)
class Transfer:
    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        self.v2 = on_release_2()  # first, before any command (workflows/common.py)
        self.input = input
        self.inbox = Inbox(input.pending)
        self.state = TransferState(workflow_id=workflow.info().workflow_id, transfer_id=input.business_key,
                                   partial_policy=input.policy.partial)
        self.log = ProcessLog(input.business_key)
        self.view: ProcessView | None = None
        self.cases: ProcessCases | None = None
        self.cancel_request: CancelRequest | None = None

    # --- handlers -------------------------------------------------------------------------------------------
    @workflow.signal(name="event", description="A transfer event (transfer.requested / shipped / received); held "
                                                "until the transfer is ready for it, each event_id applied once.")
    def event(self, event: Event) -> None:
        if not self.inbox.offer(event):
            self.state.duplicate_events += 1
            self.log.info("transfer.duplicate_event", event_id=event.event_id, type=str(event.type))

    @workflow.update(name="cancel", description="Cancel the transfer before it ships: releases the reservation. "
                                                "Refused once shipped.")
    async def cancel(self, request: CancelRequest) -> TransferState:
        self.cancel_request = request
        await workflow.wait_condition(lambda: self.state.stage.final)
        return self.query_state()

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        if self.v2:  # a receipt is goods at the destination too: once one is held or applied, it has shipped
            held = (self.inbox.has(EventType.TRANSFER_SHIPPED, EventType.TRANSFER_RECEIVED)
                    or bool(self.state.shipments or self.state.receipts))
        else:
            held = self.inbox.has(EventType.TRANSFER_SHIPPED)
        why = cancel_refusal(self.state.stage, held, self.state.to_location_id)
        if why is None and self.cancel_request is not None:
            why = "a cancellation is already under way"
        if why is not None:
            raise ValueError(f"transfer {self.state.transfer_id} cannot be cancelled: {why}")

    @workflow.query(name="state", description="The transfer: stage, lines by state (requested, reserved, shipped, "
                                              "received, in transit, short, over), receipts, cases.")
    def query_state(self) -> TransferState:
        cases = [ref.model_dump(mode="json") for ref in self.cases.refs()] if self.cases else []
        return self.state.model_copy(update={"exceptions": cases})

    # --- the process ----------------------------------------------------------------------------------------
    @workflow.run
    async def run(self, input: ProcessInput) -> TransferOutcome:
        self._setup(input)
        if not await self._opened(input):
            return await self._finish()
        request = self.inbox.take(EventType.TRANSFER_REQUESTED)
        assert request is not None and isinstance(request.data, TransferRequested)
        if not await self._request(request.data):
            return await self._finish()
        assert self.cases is not None
        self.cases.start_clock(SlaKind.TRANSFER_SHIP_OVERDUE)
        if self.v2:
            await self._ship_and_receive()
            return await self._finish()
        await workflow.wait_condition(
            lambda: self.inbox.has(EventType.TRANSFER_SHIPPED) or self.cancel_request is not None)
        if self.cancel_request is not None:  # accepted while no shipment notice was held: it wins
            await self._cancel()
            return await self._finish()
        shipped = self.inbox.take(EventType.TRANSFER_SHIPPED)
        assert shipped is not None and isinstance(shipped.data, TransferShipped)
        self.cases.stop_clock(SlaKind.TRANSFER_SHIP_OVERDUE, by=str(shipped.type))
        if not await self._ship_v1(shipped.data):
            return await self._finish()
        self.cases.start_clock(SlaKind.TRANSFER_OVERDUE)
        await self._receive_all_v1()
        return await self._finish()

    def _setup(self, input: ProcessInput) -> None:
        self.view = ProcessView(input.business_key, input.channel)
        self.cases = ProcessCases(process_type="Transfer", business_key=input.business_key, channel=input.channel,
                                  policy=input.policy.sla, view=self.view, inbox=self.inbox, log=self.log)
        self._publish()

    async def _opened(self, input: ProcessInput) -> bool:
        try:
            await workflow.wait_condition(lambda: self.inbox.has(EventType.TRANSFER_REQUESTED),
                                          timeout=input.policy.open_timeout,
                                          timeout_summary="waiting for transfer.requested")
        except TimeoutError:
            self.state.stage = TransferStage.EXPIRED
            self.state.refusal_reason = f"transfer.requested did not arrive within {input.policy.open_timeout}"
            self.log.warning("transfer.never_requested", held=[e.event_id for e in self.inbox.pending])
            return False
        return True

    async def _request(self, data: TransferRequested) -> bool:
        """Validate, convert, reserve and create the WMS shipment. False when the transfer is refused whole."""
        s = self.state
        s.from_location_id, s.to_location_id = data.from_location_id, data.to_location_id
        s.requested_at = workflow.now()
        s.stage = TransferStage.REQUESTED
        found = await call(ErpActivities.lookup_items, LookupItemsInput(skus=[line.sku for line in data.lines]),
                           summary=f"look up {len(data.lines)} SKUs")
        s.lines, s.refused_lines = plan_request(data.lines, found.items)
        locations = await call(ErpActivities.lookup_locations,
                               LookupLocationsInput(location_ids=[data.from_location_id, data.to_location_id]),
                               summary=f"look up {data.from_location_id} and {data.to_location_id}")
        source, target = (locations.locations.get(loc) for loc in (data.from_location_id, data.to_location_id))
        if source and target:
            s.from_legal_entity, s.to_legal_entity = source.legal_entity, target.legal_entity
            s.intercompany = source.legal_entity != target.legal_entity
        self.cases.scope(location_ids=s.location_ids, skus=s.skus)
        if locations.unknown:
            return self._refuse(f"unknown location {', '.join(locations.unknown)}")
        if data.from_location_id == data.to_location_id:
            return self._refuse("a transfer ships to another location")
        if not s.lines:
            return self._refuse("no line of the request could be accepted")
        if not await self._reserve():
            return False
        await call(WmsActivities.create_transfer_shipment, TransferShipmentInput(
            key=f"{s.workflow_id}:shipment", transfer_id=s.transfer_id, from_location_id=data.from_location_id,
            to_location_id=data.to_location_id,
            lines=[TaskLine(line_id=line.sku, sku=line.sku, quantity=line.reserved) for line in s.lines if line.reserved],
        ), summary=f"WMS transfer shipment {data.from_location_id} -> {data.to_location_id}")
        self.log.info("transfer.requested", reserved=sum(line.reserved for line in s.lines),
                      refused=[r.sku for r in s.refused_lines])
        self._publish()
        return True

    async def _reserve(self) -> bool:
        s = self.state
        assert s.from_location_id is not None
        for attempt in range(RESERVE_ATTEMPTS):
            rows = await call(ErpActivities.get_availability,
                              AvailabilityInput(skus=[line.sku for line in s.lines], location_ids=[s.from_location_id]),
                              summary=f"availability at {s.from_location_id}")
            plan = plan_reservation(s.lines, {r.sku: r.available for r in rows.rows}, self.input.policy.partial,
                                    s.from_location_id)
            for line in s.lines:
                line.shortfall_reason = plan.shortfalls.get(line.sku)
            if plan.refuse_whole:
                return self._refuse(plan.refuse_whole)
            suffix = f":{attempt}" if attempt else ""
            try:
                await self._move(MovementKind.RESERVE, f"reserve:{s.from_location_id}{suffix}",
                                 self._lines(plan.reserve, s.from_location_id), reason="reserve for transfer")
            except ActivityError as err:
                if refusal_type(err) == ErrorType.INSUFFICIENT_STOCK and attempt + 1 < RESERVE_ATTEMPTS:
                    self.log.info("transfer.reserve_race", attempt=attempt)
                    continue
                if refusal_type(err) == ErrorType.INSUFFICIENT_STOCK:
                    return self._refuse(f"stock at {s.from_location_id} kept being taken by others while reserving")
                raise
            for line in s.lines:
                line.reserved = plan.reserve.get(line.sku, 0)
            return True
        return self._refuse("could not reserve")  # not reached

    def _refuse(self, reason: str) -> bool:
        self.state.stage = TransferStage.REFUSED
        self.state.refusal_reason = reason
        self.log.warning("transfer.refused", reason=reason)
        return False

    async def _cancel(self) -> None:
        s = self.state
        request = self.cancel_request
        assert request is not None and self.cases is not None
        held = {line.sku: line.reserved for line in s.lines if line.reserved}
        if held:
            await self._move(MovementKind.RELEASE, f"cancel-release:{s.from_location_id}",
                             self._lines(held, s.from_location_id), reason=f"transfer cancelled: {request.reason}")
        for line in s.lines:
            line.released += line.reserved
        self.cases.stop_all(by="cancel")
        s.stage = TransferStage.CANCELLED
        s.cancel_reason, s.cancelled_by = request.reason, request.requested_by
        self.log.info("transfer.cancelled", reason=request.reason, by=request.requested_by, released=sum(held.values()))

    # --- release 2: any number of shipment notices and receipts, in any order ------------------------------
    async def _ship_and_receive(self) -> None:
        """Apply notices and receipts in arrival order until receiving is final (docs/transfers.md).

        Waits, in turn, for the next notice or receipt, the cancel (while nothing has shipped or arrived), the
        ship grace (after a notice, while shipping is not final) or the receipt grace (once shipping is final,
        after a receipt, while units are in transit)."""
        s = self.state
        assert self.cases is not None
        while True:
            if s.shipping_final_at is not None and not outstanding(s.lines):
                s.receipt_final_reason = "all received"
                break
            deadline, summary = self._next_deadline()
            if deadline is None:
                await workflow.wait_condition(self._ready)
            elif not self._ready() and deadline > workflow.now():
                try:
                    await workflow.wait_condition(self._ready, timeout=deadline - workflow.now(),
                                                  timeout_summary=summary)
                except TimeoutError:
                    pass
            if self._cancellable() and self.cancel_request is not None:  # accepted before anything applied: it wins
                await self._cancel()
                return
            event = self.inbox.take(EventType.TRANSFER_SHIPPED, EventType.TRANSFER_RECEIVED)
            if event is None:  # a grace passed with no event
                if s.shipping_final_at is not None:
                    s.receipt_final_reason = "grace expired"
                    break
                await self._shipping_final("ship grace expired")
            elif isinstance(event.data, TransferShipped):
                await self._notice(event.event_id, event.data)
                if s.shipping_final_at is None and (event.data.complete or all_reserved_shipped(s.lines)):
                    await self._shipping_final("complete" if event.data.complete else "all reserved shipped")
            else:
                assert isinstance(event.data, TransferReceived)
                await self._receipt_v2(event.event_id, event.data)
            if s.shipping_final_at is not None and not s.receipts and not any(line.shipped for line in s.lines):
                return self._nothing_shipped()
            self._publish()
        await self._close_receiving(self.input.policy.receipt_grace)

    def _cancellable(self) -> bool:
        return not self.state.shipments and not self.state.receipts

    def _ready(self) -> bool:
        return (self.inbox.has(EventType.TRANSFER_SHIPPED, EventType.TRANSFER_RECEIVED)
                or (self._cancellable() and self.cancel_request is not None))

    def _next_deadline(self) -> tuple[datetime | None, str]:
        """When the process stops waiting for the next event, and why (None: it waits for the event)."""
        s = self.state
        if s.shipping_final_at is None:
            s.receipt_grace_until = None
            return s.ship_grace_until, "ship grace: then the unshipped rest is released"
        if not s.receipts:
            return None, ""  # shipped, nothing arrived yet: waits for the first receipt (transfer_overdue runs)
        # A truck notified after the last receipt gets the receipt grace from its notice.
        last = max([r.received_at for r in s.receipts] + [n.notified_at for n in s.shipments])
        s.receipt_grace_until = last + self.input.policy.receipt_grace
        return s.receipt_grace_until, "receipt grace"

    def _nothing_shipped(self) -> None:
        s = self.state
        s.stage = TransferStage.CANCELLED
        s.cancel_reason = "the shipment notices carried nothing that was reserved for this transfer"
        s.cancelled_by = "process"
        self.log.info("transfer.nothing_shipped", notices=len(s.shipments))

    async def _notice(self, event_id: str, data: TransferShipped) -> None:
        """One truck: pick and ship out of what is still reserved, and receive at once what a receipt already
        counted (held) for it. The rest stays reserved until shipping is final."""
        s = self.state
        assert s.from_location_id and s.to_location_id and self.cases is not None
        n = len(s.shipments) + 1
        notified = sum_by_sku(data.lines)
        more: dict[str, int] = {}
        if plan_extra_reserve(s.lines, notified, notified):  # says more than is reserved, and it was requested
            more = await self._reserve_more(notified, n)
        plan = plan_notice(s.lines, notified)
        if plan.ship:
            await self._move(MovementKind.PICK, f"pick:{s.from_location_id}:{n}",
                             self._lines(plan.ship, s.from_location_id), reason=f"pick for transfer, truck {n}")
            await self._move(MovementKind.TRANSFER_SHIP, f"ship:{s.from_location_id}:{s.to_location_id}:{n}",
                             self._lines(plan.ship, s.from_location_id, to_location_id=s.to_location_id),
                             reason=f"transfer to {s.to_location_id}, truck {n}")
        if plan.match:
            await self._move(MovementKind.TRANSFER_RECEIPT, f"match:{n}", self._lines(plan.match, s.to_location_id),
                             reason=f"transfer received before its shipment notice (truck {n})")
        if plan.explained_overage:
            await self._move(MovementKind.ADJUST, f"overage-explained:{n}",
                             self._lines({sku: -q for sku, q in plan.explained_overage.items()}, s.to_location_id,
                                         bucket=Bucket.IN_TRANSIT),
                             reason=f"overage taken in earlier, shipped by truck {n}", reason_code=RECEIPT_OVERAGE)
        apply_notice(s.lines, plan)
        for sku, units in plan.beyond_reserved.items():
            s.shipped_beyond_reserved[sku] = s.shipped_beyond_reserved.get(sku, 0) + units
        s.shipments.append(ShipmentNote(event_id=event_id, notified_at=workflow.now(), lines=notified,
                                        complete=data.complete, reserved_more=more, shipped=plan.ship,
                                        matched=plan.match, explained_overage=plan.explained_overage,
                                        beyond_reserved=plan.beyond_reserved))
        if n == 1:
            s.shipped_at = workflow.now()
            self.cases.stop_clock(SlaKind.TRANSFER_SHIP_OVERDUE, by=str(EventType.TRANSFER_SHIPPED))
        if plan.ship:
            self.cases.start_clock(SlaKind.TRANSFER_OVERDUE)  # a no-op once started, or once a receipt came
            if s.stage is TransferStage.REQUESTED:
                s.stage = TransferStage.IN_TRANSIT
        if s.shipping_final_at is None:
            s.ship_grace_until = workflow.now() + self.input.policy.ship_grace
        self.log.info("transfer.shipped", truck=n, shipped=sum(plan.ship.values()), matched=sum(plan.match.values()),
                      explained_overage=sum(plan.explained_overage.values()),
                      beyond_reserved=plan.beyond_reserved, complete=data.complete)

    async def _reserve_more(self, notified: dict[str, int], n: int) -> dict[str, int]:
        """A notice says more than is still reserved: reserve what the source still has free of what was
        requested (one try; stock taken by others meanwhile stays beyond the reservation)."""
        s = self.state
        assert s.from_location_id is not None
        skus = sorted(sku for sku in notified if s.line(sku) is not None)
        rows = await call(ErpActivities.get_availability,
                          AvailabilityInput(skus=skus, location_ids=[s.from_location_id]),
                          summary=f"availability at {s.from_location_id} for truck {n}")
        more = plan_extra_reserve(s.lines, notified, {r.sku: r.available for r in rows.rows})
        if not more:
            return {}
        try:
            await self._move(MovementKind.RESERVE, f"reserve:{s.from_location_id}:{n}",
                             self._lines(more, s.from_location_id), reason=f"reserve for transfer, truck {n}")
        except ActivityError as err:
            if refusal_type(err) != ErrorType.INSUFFICIENT_STOCK:
                raise
            self.log.info("transfer.reserve_more_lost_race", truck=n)
            return {}
        for line in s.lines:
            line.reserved += more.get(line.sku, 0)
        return more

    async def _shipping_final(self, reason: str) -> None:
        """No more ships out of the reservation: release the unshipped rest at the source; what receipts counted
        and no notice matched is an overage now."""
        s = self.state
        assert s.from_location_id and s.to_location_id
        plan = plan_shipping_final(s.lines)
        if plan.release:
            await self._move(MovementKind.RELEASE, f"release:{s.from_location_id}",
                             self._lines(plan.release, s.from_location_id),
                             reason=f"reserved for transfer, not shipped ({reason})")
        if plan.overage:
            await self._move(MovementKind.ADJUST, "overage:held", self._lines(plan.overage, s.to_location_id,
                                                                              bucket=Bucket.AVAILABLE),
                             reason=f"received beyond what was shipped ({reason})", reason_code=RECEIPT_OVERAGE)
        apply_shipping_final(s.lines, plan)
        s.shipping_final_at, s.shipping_final_reason, s.ship_grace_until = workflow.now(), reason, None
        self.log.info("transfer.shipping_final", reason=reason, released=sum(plan.release.values()),
                      overage=sum(plan.overage.values()))

    async def _receipt_v2(self, event_id: str, data: TransferReceived) -> None:
        """One receipt: out of in_transit what is there; beyond that, held while a later notice could still ship
        it, an overage otherwise."""
        s = self.state
        assert s.to_location_id is not None and self.cases is not None
        counted = sum_by_sku(data.lines)
        note = ReceiptNote(event_id=event_id, received_at=workflow.now(), lines=counted)
        await self._admit_unexpected(counted, note)
        plan = plan_receipt_v2(s.lines, counted, shipping_final=s.shipping_final_at is not None)
        note.into_available, note.overage, note.held = plan.into_available, plan.overage, plan.held
        if plan.into_available:
            await self._move(MovementKind.TRANSFER_RECEIPT, f"receipt:{event_id}",
                             self._lines(plan.into_available, s.to_location_id), reason="transfer received")
        if plan.overage:
            await self._move(MovementKind.ADJUST, f"overage:{event_id}",
                             self._lines(plan.overage, s.to_location_id, bucket=Bucket.AVAILABLE),
                             reason="received beyond what was shipped", reason_code=RECEIPT_OVERAGE)
        positive = [TaskLine(line_id=sku, sku=sku, quantity=units) for sku, units in counted.items() if units > 0]
        if positive:
            await call(WmsActivities.record_receipt, ReceiptRecord(
                key=f"{s.workflow_id}:receipt:{event_id}", kind="transfer", reference=s.transfer_id,
                location_id=s.to_location_id, lines=positive,
            ), summary=f"WMS receipt at {s.to_location_id}")
        apply_receipt(s.lines, counted, plan)
        s.receipts.append(note)
        if len(s.receipts) == 1:  # goods are arriving (stopped before it started: it never starts)
            self.cases.stop_clock(SlaKind.TRANSFER_OVERDUE, by=str(EventType.TRANSFER_RECEIVED))
        s.stage = TransferStage.RECEIVING
        self.log.info("transfer.received", event_id=event_id, into_available=sum(plan.into_available.values()),
                      held=sum(plan.held.values()), overage=sum(plan.overage.values()),
                      outstanding=sum(outstanding(s.lines).values()))

    async def _ship_v1(self, data: TransferShipped) -> bool:
        """Release 1.0: pick and ship at most what is reserved, release the rest. False when nothing shipped."""
        s = self.state
        assert s.from_location_id and s.to_location_id
        plan = plan_shipment(s.lines, sum_by_sku(data.lines))
        s.shipped_beyond_reserved = plan.beyond_reserved
        if plan.ship:
            await self._move(MovementKind.PICK, f"pick:{s.from_location_id}", self._lines(plan.ship, s.from_location_id),
                             reason="pick for transfer")
            await self._move(MovementKind.TRANSFER_SHIP, f"ship:{s.from_location_id}:{s.to_location_id}",
                             self._lines(plan.ship, s.from_location_id, to_location_id=s.to_location_id),
                             reason=f"transfer to {s.to_location_id}")
        if plan.release:
            await self._move(MovementKind.RELEASE, f"release:{s.from_location_id}",
                             self._lines(plan.release, s.from_location_id), reason="reserved for transfer, not shipped")
        for line in s.lines:
            line.shipped = plan.ship.get(line.sku, 0)
            line.released += plan.release.get(line.sku, 0)
        s.shipped_at = workflow.now()
        self.log.info("transfer.shipped", shipped=sum(plan.ship.values()), released=sum(plan.release.values()),
                      beyond_reserved=plan.beyond_reserved)
        if not plan.ship:
            s.stage = TransferStage.CANCELLED
            s.cancel_reason = "the shipment notice carried nothing that was reserved for this transfer"
            s.cancelled_by = "process"
            return False
        s.stage = TransferStage.IN_TRANSIT
        self._publish()
        return True

    async def _receive_all_v1(self) -> None:
        s = self.state
        assert self.cases is not None
        grace = self.input.policy.receipt_grace
        while outstanding(s.lines):
            if s.receipts:
                try:
                    await workflow.wait_condition(lambda: self.inbox.has(EventType.TRANSFER_RECEIVED), timeout=grace,
                                                  timeout_summary="receipt grace")
                except TimeoutError:
                    s.receipt_final_reason = "grace expired"
                    break
            else:
                await workflow.wait_condition(lambda: self.inbox.has(EventType.TRANSFER_RECEIVED))
            event = self.inbox.take(EventType.TRANSFER_RECEIVED)
            assert event is not None and isinstance(event.data, TransferReceived)
            await self._receipt_v1(event.event_id, event.data)
            if len(s.receipts) == 1:
                self.cases.stop_clock(SlaKind.TRANSFER_OVERDUE, by=str(event.type))
            s.receipt_grace_until = workflow.now() + grace
            self._publish()
        s.receipt_final_reason = s.receipt_final_reason or "all received"
        await self._close_receiving(grace)

    async def _close_receiving(self, grace: timedelta) -> None:
        """Receiving is final: write off what is still in transit, and open the variance case if any."""
        s = self.state
        assert self.cases is not None
        short = outstanding(s.lines)
        if short:
            await self._move(MovementKind.ADJUST, "shrink",
                             self._lines({sku: -units for sku, units in short.items()}, s.to_location_id,
                                         bucket=Bucket.IN_TRANSIT),
                             reason=f"not received within {grace} of the last receipt", reason_code=SHRINK_IN_TRANSIT)
            for line in s.lines:
                line.short += short.get(line.sku, 0)
        s.receipt_final_at = workflow.now()
        s.receipt_grace_until = None
        s.stage = TransferStage.RECEIVED
        s.variance = variance(s.lines)
        if s.variance:
            summary, details = describe_variance(s.variance)
            details.update(from_location_id=s.from_location_id or "", to_location_id=s.to_location_id or "")
            self.cases.open_case(CaseKind.RECEIPT_VARIANCE, summary=f"transfer {s.transfer_id}: {summary}",
                                 details=details)
            self.log.warning("transfer.receipt_variance", short=sum(v.short for v in s.variance),
                             over=sum(v.over for v in s.variance))

    async def _receipt_v1(self, event_id: str, data: TransferReceived) -> None:
        s = self.state
        assert s.to_location_id is not None
        counted = sum_by_sku(data.lines)
        note = ReceiptNote(event_id=event_id, received_at=workflow.now(), lines=counted)
        await self._admit_unexpected(counted, note)
        plan = plan_receipt(s.lines, counted)
        note.into_available, note.overage = plan.into_available, plan.overage
        if plan.into_available:
            await self._move(MovementKind.TRANSFER_RECEIPT, f"receipt:{event_id}",
                             self._lines(plan.into_available, s.to_location_id), reason="transfer received")
        if plan.overage:
            await self._move(MovementKind.ADJUST, f"overage:{event_id}",
                             self._lines(plan.overage, s.to_location_id, bucket=Bucket.AVAILABLE),
                             reason="received beyond what was shipped", reason_code=RECEIPT_OVERAGE)
        positive = [TaskLine(line_id=sku, sku=sku, quantity=units) for sku, units in counted.items() if units > 0]
        if positive:
            await call(WmsActivities.record_receipt, ReceiptRecord(
                key=f"{s.workflow_id}:receipt:{event_id}", kind="transfer", reference=s.transfer_id,
                location_id=s.to_location_id, lines=positive,
            ), summary=f"WMS receipt at {s.to_location_id}")
        for line in s.lines:
            line.received += counted.get(line.sku, 0)
            line.over += plan.overage.get(line.sku, 0)
        s.receipts.append(note)
        s.stage = TransferStage.RECEIVING if outstanding(s.lines) else s.stage
        self.log.info("transfer.received", event_id=event_id, into_available=sum(plan.into_available.values()),
                      overage=sum(plan.overage.values()), outstanding=sum(outstanding(s.lines).values()))

    async def _admit_unexpected(self, counted: dict[str, int], note: ReceiptNote) -> None:
        """A receipt's SKUs not on the transfer: known ones join it as not requested, unknown ones are refused."""
        s = self.state
        unexpected = [sku for sku, units in counted.items() if units > 0 and s.line(sku) is None]
        if unexpected:
            found = await call(ErpActivities.lookup_items, LookupItemsInput(skus=unexpected),
                               summary=f"look up {len(unexpected)} SKUs not on the transfer")
            for sku in unexpected:
                if sku in found.items:
                    s.lines.append(TransferLine(sku=sku, as_requested="not requested", requested=0))
                else:
                    note.refused.append(RefusedLine(sku=sku, quantity=counted.pop(sku), uom="EA",
                                                    reason=f"unknown SKU {sku}"))

    async def _finish(self) -> TransferOutcome:
        s = self.state
        s.ignored_events = [e.event_id for e in self.inbox.pending]
        if s.ignored_events:
            self.log.info("transfer.events_not_applied", event_ids=s.ignored_events)
        self._publish()
        if self.cases is not None:
            await self.cases.drain()
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self.v2:
            await enter_closed("Transfer", self.input.business_key, self.input.channel, str(s.stage), str(s.stage),
                               self.query_state(), self.inbox)
        self.log.info("transfer.closed", stage=str(s.stage))
        return TransferOutcome(
            workflow_id=s.workflow_id, transfer_id=s.transfer_id, stage=s.stage,
            reason=s.refusal_reason or s.cancel_reason,
            reserved=sum(line.reserved for line in s.lines), shipped=sum(line.shipped for line in s.lines),
            received=sum(line.received for line in s.lines), short=sum(line.short for line in s.lines),
            over=sum(line.over for line in s.lines),
        )

    # --- helpers --------------------------------------------------------------------------------------------
    @staticmethod
    def _lines(units: Mapping[str, int], location_id: str | None, **extra: object) -> list[MovementLine]:
        assert location_id is not None
        return [MovementLine(sku=sku, location_id=location_id, quantity=q, **extra)  # type: ignore[arg-type]
                for sku, q in sorted(units.items()) if q]

    async def _move(self, kind: MovementKind, step: str, lines: list[MovementLine], *, reason: str,
                    reason_code: str | None = None) -> None:
        """Post one ledger movement keyed by this transfer and the step (never by run: a retry applies once)."""
        info = workflow.info()
        total = sum(abs(line.quantity) for line in lines)
        await call(ErpActivities.post_movement, MovementRequest(
            key=f"{self.state.workflow_id}:{step}", kind=kind, lines=lines, reason=reason, reason_code=reason_code,
            workflow_id=info.workflow_id, run_id=info.run_id, reference=self.state.transfer_id,
        ), summary=f"{kind} {total} units ({step})")

    def _publish(self) -> None:
        """Keep the search attributes and the current details in step with the state."""
        if self.view is None:
            return
        s = self.state
        self.view.stage(str(s.stage))
        if s.skus:
            self.view.skus(s.skus)
        if s.location_ids:
            self.view.locations(s.location_ids)
        if self.cases is not None:
            self.view.exceptions(self.cases.open_count, self.cases.sla_breached)
        self.view.details(details_markdown(s))

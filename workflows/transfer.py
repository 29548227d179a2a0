"""Transfer: stock from one location to another, through in_transit, with variances handled.

Workflow ID `transfer:{transfer_id}`, business key the transfer_id. Events arrive on the `event` signal
(signal-with-start: an early notice or receipt starts the process and is held until `transfer.requested` opens
it; an event_id is applied once). The rules are release 2's (docs/transfers.md, domain/transfer.py):
`transfer.requested` converts, reserves at the source and creates the WMS transfer shipment; then notices
(trucks) and receipts are applied in arrival order until receiving is final, bounded by the ship grace and the
receipt grace; a shortage is written off as shrink in transit, a variance opens one `receipt_variance` case.
Ops `cancel` before anything shipped or arrived. Never requested within `policy.open_timeout`: `expired`.

Release 3 (docs/transfers.md, "Release 3"): the same rules and movement keys on `workflows.process.Process`; the
reads and the postings of one step are local activities of one workflow task (one action), the reservation is
`workflows.reserve.reserve_with_retry`, and a long history continues as new. A run started on release 1.0 or
2.0 is handed to workflows/release_2/transfer.py for its whole life.
"""
import asyncio
from collections.abc import Mapping
from datetime import datetime

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.erp import ErpActivities
    from activities.wms import WmsActivities
    from adapters.erp import AvailabilityInput, AvailabilityResult, LookupItemsInput, LookupLocationsInput
    from adapters.wms import ReceiptRecord, TaskLine, TransferShipmentInput
    from domain.errors import ErrorType
    from domain.events import Event, EventType, TransferReceived, TransferRequested, TransferShipped
    from domain.inventory import Bucket, MovementKind, MovementLine
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
        plan_receipt_v2,
        plan_request,
        plan_reservation,
        plan_shipping_final,
        sum_by_sku,
        variance,
    )
    from workflows.calls import call_local, refusal_type
    from workflows.common import on_release_3
    from workflows.process import Process, Shown
    from workflows.release_2 import transfer as release_2
    from workflows.reserve import reserve_with_retry


@workflow.defn(name="Transfer")
class Transfer(Process):
    process_type = "Transfer"

    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        self.legacy = None if on_release_3() else release_2.Transfer(input)
        if self.legacy is not None:
            return
        super().__init__(input)
        self.state = (TransferState.model_validate(input.resume) if input.resume else
                      TransferState(workflow_id=self.workflow_id, transfer_id=input.business_key,
                                    partial_policy=input.policy.partial))
        self.cases.scope(location_ids=self.state.location_ids, skus=self.state.skus)  # a resumed run's scope
        self.cancel_request: CancelRequest | None = None

    # --- handlers -------------------------------------------------------------------------------------------
    @workflow.signal(name="event", description="A transfer event (transfer.requested / shipped / received); held "
                                                "until the transfer is ready for it, each event_id applied once.")
    def event(self, event: Event) -> None:
        if self.legacy is not None:
            return self.legacy.event(event)
        if not self.inbox.offer(event):
            self.state.duplicate_events += 1
            self.log.info("transfer.duplicate_event", event_id=event.event_id, type=str(event.type))

    @workflow.update(name="cancel", description="Cancel the transfer before it ships: releases the reservation. "
                                                "Refused once shipped.")
    async def cancel(self, request: CancelRequest) -> TransferState:
        if self.legacy is not None:
            return await self.legacy.cancel(request)
        self.cancel_request = request
        await workflow.wait_condition(lambda: self.state.stage.final)
        return self.query_state()

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        if self.legacy is not None:
            return self.legacy._validate_cancel(request)
        s = self.state
        # a receipt is goods at the destination too: once one is held or applied, the transfer has shipped
        held = self.inbox.has(EventType.TRANSFER_SHIPPED, EventType.TRANSFER_RECEIVED) or bool(s.shipments or s.receipts)
        why = cancel_refusal(s.stage, held, s.to_location_id)
        if why is None and self.cancel_request is not None:
            why = "a cancellation is already under way"
        if why is not None:
            raise ValueError(f"transfer {s.transfer_id} cannot be cancelled: {why}")

    @workflow.query(name="state", description="The transfer: stage, lines by state (requested, reserved, shipped, "
                                              "received, in transit, short, over), receipts, cases.")
    def query_state(self) -> TransferState:
        if self.legacy is not None:
            return self.legacy.query_state()
        return self.state.model_copy(update={"exceptions": [ref.model_dump(mode="json") for ref in self.cases.refs()]})

    def shown(self) -> Shown:
        s = self.state
        return Shown(stage=str(s.stage), skus=s.skus, location_ids=s.location_ids, details=details_markdown(s))

    # --- the process ----------------------------------------------------------------------------------------
    @workflow.run
    async def run(self, input: ProcessInput) -> TransferOutcome:
        if self.legacy is not None:
            return await self.legacy.run(input)
        if self.state.stage is TransferStage.AWAITING_REQUEST:  # a resumed run is past its request
            if not await self._open():
                return await self._finish()
            self.cases.start_clock(SlaKind.TRANSFER_SHIP_OVERDUE)
        await self._ship_and_receive()
        return await self._finish()

    async def _open(self) -> bool:
        """Wait for `transfer.requested` and apply it. False when it never came or the transfer is refused."""
        s = self.state
        if not self.inbox.has(EventType.TRANSFER_REQUESTED):
            self.refresh()  # opened by an early event: shown awaiting the request meanwhile
        request = await self.opening(EventType.TRANSFER_REQUESTED, resume=s)
        if request is None:
            s.stage = TransferStage.EXPIRED
            s.refusal_reason = f"transfer.requested did not arrive within {self.policy.open_timeout}"
            self.log.warning("transfer.never_requested", held=[e.event_id for e in self.inbox.pending])
            return False
        assert isinstance(request.data, TransferRequested)
        return await self._request(request.data)

    async def _request(self, data: TransferRequested) -> bool:
        """Validate, convert, reserve and create the WMS shipment. False when the transfer is refused whole."""
        s = self.state
        s.from_location_id, s.to_location_id = data.from_location_id, data.to_location_id
        s.requested_at = workflow.now()
        s.stage = TransferStage.REQUESTED
        found, locations = await asyncio.gather(
            call_local(ErpActivities.lookup_items, LookupItemsInput(skus=[line.sku for line in data.lines]),
                       summary=f"look up {len(data.lines)} SKUs"),
            call_local(ErpActivities.lookup_locations,
                       LookupLocationsInput(location_ids=[data.from_location_id, data.to_location_id]),
                       summary=f"look up {data.from_location_id} and {data.to_location_id}"))
        s.lines, s.refused_lines = plan_request(data.lines, found.items)
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
        # local: idempotent by key and short, in the task of the reads and the reservation (one action)
        await call_local(WmsActivities.create_transfer_shipment, TransferShipmentInput(
            key=f"{s.workflow_id}:shipment", transfer_id=s.transfer_id, from_location_id=data.from_location_id,
            to_location_id=data.to_location_id,
            lines=[TaskLine(line_id=line.sku, sku=line.sku, quantity=line.reserved) for line in s.lines if line.reserved],
        ), summary=f"WMS transfer shipment {data.from_location_id} -> {data.to_location_id}")
        self.log.info("transfer.requested", reserved=sum(line.reserved for line in s.lines),
                      refused=[r.sku for r in s.refused_lines])
        return True

    async def _reserve(self) -> bool:
        """Reserve what the source has free (the partial policy decides about the rest). False when refused."""
        s = self.state
        source = s.from_location_id
        assert source is not None
        refused: list[str] = []

        def plan(left: Mapping[str, tuple[str, int]], available: AvailabilityResult) -> dict[str, dict[str, int]]:
            free = {r.sku: r.available for r in available.rows}
            planned = plan_reservation(s.lines, free, self.policy.partial, source)  # re-planned whole: one share
            for line in s.lines:
                line.shortfall_reason = planned.shortfalls.get(line.sku)
            if planned.refuse_whole:
                refused.append(planned.refuse_whole)
                return {}
            return {source: planned.reserve}

        reserved = await reserve_with_retry(
            self, {line.sku: (line.sku, line.requested) for line in s.lines}, location_ids=[source], plan=plan,
            lines=lambda location, share: self._lines(share, location), reason="reserve for transfer", local=True)
        if refused:
            return self._refuse(refused[-1])
        if source not in reserved.at:
            return self._refuse(f"stock at {source} kept being taken by others while reserving")
        for line in s.lines:
            line.reserved = reserved.at[source].get(line.sku, 0)
        return True

    def _refuse(self, reason: str) -> bool:
        self.state.stage = TransferStage.REFUSED
        self.state.refusal_reason = reason
        self.log.warning("transfer.refused", reason=reason)
        return False

    async def _cancel(self) -> None:
        s = self.state
        request = self.cancel_request
        assert request is not None
        held = {line.sku: line.reserved for line in s.lines if line.reserved}
        if held:
            await self._post(MovementKind.RELEASE, f"cancel-release:{s.from_location_id}",
                             self._lines(held, s.from_location_id), reason=f"transfer cancelled: {request.reason}")
        for line in s.lines:
            line.released += line.reserved
        self.cases.stop_all(by="cancel")
        s.stage = TransferStage.CANCELLED
        s.cancel_reason, s.cancelled_by = request.reason, request.requested_by
        self.log.info("transfer.cancelled", reason=request.reason, by=request.requested_by, released=sum(held.values()))

    # --- notices and receipts, any number of each, in any order --------------------------------------------
    async def _ship_and_receive(self) -> None:
        """Apply notices and receipts in arrival order until receiving is final (docs/transfers.md).

        Waits, in turn, for the next notice or receipt, the cancel (while nothing has shipped or arrived), the
        ship grace (after a notice, while shipping is not final) or the receipt grace (once shipping is final,
        after a receipt, while units are in transit). Continues as new, when the history is long, after an event."""
        s = self.state
        while True:
            if s.shipping_final_at is not None and not outstanding(s.lines):
                s.receipt_final_reason = "all received"
                break
            deadline, summary = self._next_deadline()
            self.refresh()  # here, not after an event: the last event's change is shown by the close, one upsert
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
                await self._receipt(event.event_id, event.data)
            if s.shipping_final_at is not None and not s.receipts and not any(line.shipped for line in s.lines):
                return self._nothing_shipped()
            await self.checkpoint(self.state)
        await self._close_receiving()

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
        s.receipt_grace_until = last + self.policy.receipt_grace
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
        assert s.from_location_id and s.to_location_id
        n = len(s.shipments) + 1
        notified = sum_by_sku(data.lines)
        more: dict[str, int] = {}
        if plan_extra_reserve(s.lines, notified, notified):  # says more than is reserved, and it was requested
            more = await self._reserve_more(notified, n)
        plan = plan_notice(s.lines, notified)
        if plan.ship:
            await self._post(MovementKind.PICK, f"pick:{s.from_location_id}:{n}",
                             self._lines(plan.ship, s.from_location_id), reason=f"pick for transfer, truck {n}")
            await self._post(MovementKind.TRANSFER_SHIP, f"ship:{s.from_location_id}:{s.to_location_id}:{n}",
                             self._lines(plan.ship, s.from_location_id, to_location_id=s.to_location_id),
                             reason=f"transfer to {s.to_location_id}, truck {n}")
        if plan.match:
            await self._post(MovementKind.TRANSFER_RECEIPT, f"match:{n}", self._lines(plan.match, s.to_location_id),
                             reason=f"transfer received before its shipment notice (truck {n})")
        if plan.explained_overage:
            await self._post(MovementKind.ADJUST, f"overage-explained:{n}",
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
            s.ship_grace_until = workflow.now() + self.policy.ship_grace
        self.log.info("transfer.shipped", truck=n, shipped=sum(plan.ship.values()), matched=sum(plan.match.values()),
                      explained_overage=sum(plan.explained_overage.values()),
                      beyond_reserved=plan.beyond_reserved, complete=data.complete)

    async def _reserve_more(self, notified: dict[str, int], n: int) -> dict[str, int]:
        """A notice says more than is still reserved: reserve what the source still has free of what was
        requested (one try; stock taken by others meanwhile stays beyond the reservation)."""
        s = self.state
        assert s.from_location_id is not None
        skus = sorted(sku for sku in notified if s.line(sku) is not None)
        rows = await call_local(ErpActivities.get_availability,
                                AvailabilityInput(skus=skus, location_ids=[s.from_location_id]),
                                summary=f"availability at {s.from_location_id} for truck {n}")
        more = plan_extra_reserve(s.lines, notified, {r.sku: r.available for r in rows.rows})
        if not more:
            return {}
        try:
            await self._post(MovementKind.RESERVE, f"reserve:{s.from_location_id}:{n}",
                             self._lines(more, s.from_location_id), reason=f"reserve for transfer, truck {n}")
        except (ActivityError, ApplicationError) as err:  # a local activity's refusal is the ApplicationError itself
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
            await self._post(MovementKind.RELEASE, f"release:{s.from_location_id}",
                             self._lines(plan.release, s.from_location_id),
                             reason=f"reserved for transfer, not shipped ({reason})")
        if plan.overage:
            await self._post(MovementKind.ADJUST, "overage:held", self._lines(plan.overage, s.to_location_id,
                                                                              bucket=Bucket.AVAILABLE),
                             reason=f"received beyond what was shipped ({reason})", reason_code=RECEIPT_OVERAGE)
        apply_shipping_final(s.lines, plan)
        s.shipping_final_at, s.shipping_final_reason, s.ship_grace_until = workflow.now(), reason, None
        self.log.info("transfer.shipping_final", reason=reason, released=sum(plan.release.values()),
                      overage=sum(plan.overage.values()))

    async def _receipt(self, event_id: str, data: TransferReceived) -> None:
        """One receipt: out of in_transit what is there; beyond that, held while a later notice could still ship
        it, an overage otherwise."""
        s = self.state
        assert s.to_location_id is not None
        counted = sum_by_sku(data.lines)
        note = ReceiptNote(event_id=event_id, received_at=workflow.now(), lines=counted)
        await self._admit_unexpected(counted, note)
        plan = plan_receipt_v2(s.lines, counted, shipping_final=s.shipping_final_at is not None)
        note.into_available, note.overage, note.held = plan.into_available, plan.overage, plan.held
        if plan.into_available:
            await self._post(MovementKind.TRANSFER_RECEIPT, f"receipt:{event_id}",
                             self._lines(plan.into_available, s.to_location_id), reason="transfer received")
        if plan.overage:
            await self._post(MovementKind.ADJUST, f"overage:{event_id}",
                             self._lines(plan.overage, s.to_location_id, bucket=Bucket.AVAILABLE),
                             reason="received beyond what was shipped", reason_code=RECEIPT_OVERAGE)
        positive = [TaskLine(line_id=sku, sku=sku, quantity=units) for sku, units in counted.items() if units > 0]
        if positive:
            # local: the WMS record is idempotent by key and short, one task with the receipt's postings
            await call_local(WmsActivities.record_receipt, ReceiptRecord(
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

    async def _admit_unexpected(self, counted: dict[str, int], note: ReceiptNote) -> None:
        """A receipt's SKUs not on the transfer: known ones join it as not requested, unknown ones are refused."""
        s = self.state
        unexpected = [sku for sku, units in counted.items() if units > 0 and s.line(sku) is None]
        if unexpected:
            found = await call_local(ErpActivities.lookup_items, LookupItemsInput(skus=unexpected),
                                     summary=f"look up {len(unexpected)} SKUs not on the transfer")
            for sku in unexpected:
                if sku in found.items:
                    s.lines.append(TransferLine(sku=sku, as_requested="not requested", requested=0))
                else:
                    note.refused.append(RefusedLine(sku=sku, quantity=counted.pop(sku), uom="EA",
                                                    reason=f"unknown SKU {sku}"))

    async def _close_receiving(self) -> None:
        """Receiving is final: write off what is still in transit, and open the variance case if any."""
        s = self.state
        short = outstanding(s.lines)
        if short:
            await self._post(MovementKind.ADJUST, "shrink",
                             self._lines({sku: -units for sku, units in short.items()}, s.to_location_id,
                                         bucket=Bucket.IN_TRANSIT),
                             reason=f"not received within {self.policy.receipt_grace} of the last receipt",
                             reason_code=SHRINK_IN_TRANSIT)
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

    async def _finish(self) -> TransferOutcome:
        s = self.state
        s.ignored_events = [e.event_id for e in self.inbox.pending]
        if s.ignored_events:
            self.log.info("transfer.events_not_applied", event_ids=s.ignored_events)
        # local: in the task of the last step's postings (receipt, write-off, release, the request's reads), one
        # action with them; after the open timeout alone, as a remote one would be
        await self.close(str(s.stage), str(s.stage), self.query_state(), local=True)
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

    async def _post(self, kind: MovementKind, step: str, lines: list[MovementLine], *, reason: str,
                    reason_code: str | None = None) -> None:
        """Post one ledger movement of a notice, a receipt, the shipping or receiving close or a cancel.

        A local activity: a posting is short and idempotent by its key, and the postings of one step (pick and
        ship, a receipt and its overage and WMS record) run in one workflow task, one action for all of them."""
        total = sum(abs(line.quantity) for line in lines)
        await call_local(ErpActivities.post_movement,
                         self.movement(step, kind, lines, reason, reason_code=reason_code),
                         summary=f"{kind} {total} units ({step})")

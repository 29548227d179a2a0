"""ReserveToFulfill: the order process from placement to hand-over (workflow ID `order:{channel}:{order_id}`).

Release 3 (runs started on 1.0 or 2.0 are handed to workflows/release_2 for life):
- `place` (update, order.placed): the item master and availability reads and the RESERVE movements are local
  activities of the update's workflow task; the decision is answered, and only then, in `run`, the WMS pick task
  per location is created (the update returns in the task that schedules it).
- `fulfillment.picked` per location (PICK; a short pick releases the missing units and opens `short_pick`), one
  or more `shipment.dispatched` (SHIP, WMS shipment record), or `order.collected` for a pickup order. A shipment
  is handed to ShipToSettle as `order.shipped`; the one that ends the order carries the close (`closed`) and is
  handed over by the closing activity, so the order's last step is one action with its ship step.
- `order.cancelled` (event) or `cancel` (ops update) before the last hand-over gives back what is still held; a
  ship order asks the WMS per location first (intercepted: units back; already dispatched: wait for the parcel).
- SLA clocks through ProcessCases: pick_overdue, ship_overdue, authorization_expiring, pickup_expired (acts:
  the stock goes back, the order is cancelled, the authorization voided).
- A long history continues as new between events (`ProcessPolicy.continue_as_new_after`), state in `OrderProgress`.
"""
import asyncio
from collections.abc import Mapping
from decimal import Decimal

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.erp import ErpActivities
    from activities.pos import PosActivities
    from activities.routing import RoutingActivities
    from activities.wms import WmsActivities
    from adapters.erp import AvailabilityResult, LookupItemsInput
    from adapters.pos import VoidInput
    from adapters.wms import (
        CancelFulfillmentInput,
        InterceptAnswer,
        PickTaskInput,
        ShipmentRecord,
        ShippedLine,
        TaskLine,
    )
    from domain import order as rules
    from domain.errors import DomainError, ErrorType
    from domain.events import (
        Event,
        EventData,
        EventType,
        FulfillmentMode,
        FulfillmentPicked,
        OrderCancelled,
        OrderClosed,
        OrderCollected,
        OrderPlaced,
        OrderShipped,
        PricedLine,
        ShipmentDispatched,
        line_amount,
    )
    from domain.ids import internal_event_id
    from domain.inventory import MovementKind, MovementLine
    from domain.order import (
        CancelRequest,
        CancelResult,
        Decision,
        LineState,
        OrderDecision,
        OrderOutcome,
        OrderProgress,
        OrderStage,
        OrderState,
        ReleasedLine,
        ShipmentState,
    )
    from domain.process import PartialPolicy, ProcessInput
    from domain.sla import CaseKind, SlaKind
    from workflows.calls import call, call_local, refusal_type
    from workflows.common import on_release_3
    from workflows.process import Process, Shown, markdown_table
    from workflows.release_2 import reserve_to_fulfill as release_2
    from workflows.reserve import reserve_with_retry

ACTIVE_STAGES = frozenset({OrderStage.AWAITING_PICK, OrderStage.AWAITING_DISPATCH, OrderStage.AWAITING_COLLECTION,
                           OrderStage.PARTIALLY_SHIPPED})
CLOCKS = (SlaKind.PICK_OVERDUE, SlaKind.SHIP_OVERDUE, SlaKind.AUTHORIZATION_EXPIRING, SlaKind.PICKUP_EXPIRED)

# Local activities (workflows/calls.py): the reads, and the ledger postings and WMS shipment record of one step
# (reserve, reject, pick, release, ship, the hand-over of a shipment that does not end the order). Each is short
# and idempotent by its key (movement key, shipment key, event ID), and they run in the workflow task of the
# event that asks for them, so a step is one action and no server round trip. Requests the WMS or the POS answer
# in their own time (pick task, cancel interception, void) stay activities on the task queue.


@workflow.defn(name="ReserveToFulfill")
class ReserveToFulfill(Process):
    process_type = "ReserveToFulfill"

    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        self.legacy = None if on_release_3() else release_2.ReserveToFulfill(input)  # first, before any command
        if self.legacy is not None:
            return
        super().__init__(input)
        self.progress = OrderProgress.model_validate(input.resume) if input.resume else OrderProgress()
        self.placing = False
        self.cancel_requests: list[CancelRequest] = []
        self.cancel_result: CancelResult | None = None
        self.last_shipped: OrderShipped | None = None  # the shipment that ends the order: handed over by close()
        if input.resume:  # continued as new: the view and the cases' scope as the last run left them
            self._scope()
            self.refresh()

    def shown(self) -> Shown:
        p = self.progress
        details = ""
        if p.lines:
            headers, rows = rules.details_table(p.lines)
            details = markdown_table(headers, rows)
            if p.shipments:
                details += "\n\nShipments: " + ", ".join(
                    f"{s.shipment_id} ({sum(s.lines.values())} EA from {s.location_id})" for s in p.shipments)
            if self.inbox.pending:
                details += "\n\nHeld: " + ", ".join(str(e.type) for e in self.inbox.pending)
        return Shown(stage=str(p.stage), skus=[ln.sku for ln in p.lines if ln.ordered],
                     location_ids=[ln.location_id for ln in p.lines if ln.location_id], details=details)

    # --- run -------------------------------------------------------------------------------------------
    @workflow.run
    async def run(self, input: ProcessInput) -> OrderOutcome:
        if self.legacy is not None:
            return await self.legacy.run(input)
        p = self.progress
        if p.decision is None:
            if not self.placing:  # opened by an early event (an update-with-start is placing already)
                self.refresh()
            if not await self._wait_for_order():
                return await self._finish("never_opened", OrderStage.NEVER_OPENED)
            if p.decision is None and not self.placing:  # order.placed came as a signal, not the update
                placed = self.inbox.take(EventType.ORDER_PLACED)
                if placed is not None:
                    await self._place(placed)
            await workflow.wait_condition(lambda: p.decision is not None and not self.placing)
        if p.stage is OrderStage.REJECTED:
            await self._void("order rejected")
            return await self._finish("rejected", OrderStage.REJECTED)
        await self._create_pick_tasks()
        await self._fulfil()
        return await self._close()

    async def _wait_for_order(self) -> bool:
        if await self.wait_to_open(
                lambda: self.progress.decision is not None or self.placing or self.inbox.has(EventType.ORDER_PLACED),
                resume=self.progress, summary="waiting for order.placed"):
            return True
        self.log.warning("order never opened", held=[str(e.type) for e in self.inbox.pending])
        return False

    async def _create_pick_tasks(self) -> None:
        """The WMS pick task of every location holding reserved units, once: after the decision was answered (the
        `place` update completes in the workflow task that schedules these)."""
        order = self._order()
        todo = {location: lines for location, lines in self._held_by_location("reserved").items()
                if location not in self.progress.pick_tasks}
        await asyncio.gather(*(call(WmsActivities.create_pick_task, PickTaskInput(
            key=f"{self.workflow_id}:pick-task:{location}", channel=order.channel, order_id=order.order_id,
            location_id=location, lines=[TaskLine(line_id=ln.line_id, sku=ln.sku, quantity=ln.reserved) for ln in lines],
        ), summary=f"pick task at {location}") for location, lines in todo.items()))
        self.progress.pick_tasks += list(todo)

    async def _fulfil(self) -> None:
        """Apply held and arriving events in order, each when its turn has come, until nothing is held; continue
        as new between two events when the history is long."""
        while self._holding() or self._dispatch_after_cancel() is not None:
            if not self.cancel_requests:  # an ops cancel waits for this loop: never continue as new under it
                await self.checkpoint(self.progress)
            await workflow.wait_condition(
                lambda: bool(self.cancel_requests) or self._pickup_expired() or self._applicable() is not None
                or self.history_long()
            )
            if self.cancel_requests:
                request = self.cancel_requests.pop(0)
                await self._cancel(request.reason, by=f"ops:{request.requested_by}")
            elif self._pickup_expired():
                await self._expire_pickup()
            elif (event := self._applicable()) is not None:
                self.inbox.remove(event)
                await self._apply(event.data)
            self.refresh()
        self.progress.stage = self._stage()
        self.refresh()

    async def _apply(self, data: EventData) -> None:
        if isinstance(data, OrderCancelled):
            await self._cancel(data.reason, by=str(EventType.ORDER_CANCELLED))
        elif isinstance(data, FulfillmentPicked):
            await self._picked(data)
        elif isinstance(data, ShipmentDispatched):
            await self._dispatched(data)
        elif isinstance(data, OrderCollected):
            await self._collected(data)

    async def _close(self) -> OrderOutcome:
        """ShipToSettle is told the order is closed with the shipments it was handed (a parcel that left after
        the payment was voided was not: its case is with ops): on the last shipment when it ends the order, else
        as order.closed. With none billed, what is left of the authorization is voided."""
        p = self.progress
        order = self._order()
        shipped = sum(ln.shipped for ln in p.lines)
        if p.expired:
            outcome = "expired"
        elif p.cancel_reason is not None:
            outcome = "cancelled" if not shipped else "partially_fulfilled"
        elif shipped and all(ln.shipped == ln.ordered for ln in p.lines):
            outcome = "fulfilled"
        else:
            outcome = "partially_fulfilled" if shipped else "cancelled"
        billed = [s.shipment_id for s in p.shipments if s.billed]
        closed = OrderClosed(order_id=order.order_id, channel=order.channel, outcome=outcome, shipment_ids=billed)
        hand_over: list[Event] = []
        if self.last_shipped is not None:
            hand_over.append(self._internal_event(f"shipped:{self.last_shipped.shipment_id}", EventType.ORDER_SHIPPED,
                                                  self.last_shipped.model_copy(update={"closed": closed})))
        elif billed:
            hand_over.append(self._internal_event("closed", EventType.ORDER_CLOSED, closed))
        else:
            await self._void(f"nothing billed ({outcome})")
        return await self._finish(outcome, OrderStage.FULFILLED if shipped else OrderStage.CANCELLED,
                                  hand_over=hand_over)

    async def _finish(self, outcome: str, stage: OrderStage, *, hand_over: list[Event] | None = None) -> OrderOutcome:
        p = self.progress
        p.stage = stage
        if self.cancel_requests:  # an ops cancel that came in as the last units left: nothing was left to give
            self.cancel_result = self._cancel_summary([], voided=p.payment_voided)
            self.cancel_requests.clear()
        # local: after a ship step, the hand-over shares its action (workflows/process.py)
        await self.close(outcome, str(stage), self.state(), hand_over=hand_over or [], local=True)
        return OrderOutcome(
            workflow_id=self.workflow_id, outcome=outcome, stage=stage,
            shipped_units=sum(ln.shipped for ln in p.lines), released_units=sum(ln.released for ln in p.lines),
            shipment_ids=[s.shipment_id for s in p.shipments],
        )

    # --- handlers --------------------------------------------------------------------------------------
    @workflow.signal(name="event", description="A business event of this order (order.cancelled, "
                     "fulfillment.picked, shipment.dispatched, order.collected); held until its turn.")
    def event(self, event: Event) -> None:
        if self.legacy is not None:
            return self.legacy.event(event)
        if self.inbox.offer(event):
            self.refresh()

    @workflow.update(name="place", description="order.placed: reserve and answer the reservation decision; a "
                     "redelivery answers the same decision.")
    async def place(self, event: Event) -> OrderDecision:
        if self.legacy is not None:
            return await self.legacy.place(event)
        if self.progress.decision is None and not self.placing:
            self.inbox.seen_ids.add(event.event_id)
            await self._place(event)
        await workflow.wait_condition(lambda: self.progress.decision is not None and not self.placing)
        assert self.progress.decision is not None
        return self.progress.decision

    @place.validator
    def _validate_place(self, event: Event) -> None:
        if self.legacy is not None:
            return self.legacy._validate_place(event)
        if event.type is not EventType.ORDER_PLACED or not isinstance(event.data, OrderPlaced):
            raise ValueError(f"place takes order.placed, not {event.type}")
        key = f"{event.data.channel}/{event.data.order_id}"
        if key != self.input.business_key:
            raise ValueError(f"order.placed for {key} sent to order {self.input.business_key}")
        if self.progress.stage is OrderStage.NEVER_OPENED:
            raise ValueError("this order process ended without an order; place the order again under a new ID")

    @workflow.update(name="cancel", description="Ops cancels the order: gives back what is still reserved or "
                     "picked and answers what was released.")
    async def cancel(self, request: CancelRequest) -> CancelResult:
        if self.legacy is not None:
            return await self.legacy.cancel(request)
        self.cancel_requests.append(request)
        await workflow.wait_condition(lambda: request not in self.cancel_requests and self.cancel_result is not None)
        assert self.cancel_result is not None
        return self.cancel_result

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        if self.legacy is not None:
            return self.legacy._validate_cancel(request)
        if self.progress.decision is None:
            raise ValueError("the order is not placed yet")
        if self.progress.stage not in ACTIVE_STAGES or not self._holding():
            raise ValueError(f"nothing left to cancel: the order is {self.progress.stage}")
        if self.cancel_requests:
            raise ValueError("a cancellation is already under way")

    @workflow.query(name="state", description="The order: stage, lines with quantities by state, shipments, "
                    "exception cases, workflow ID.")
    def state(self) -> OrderState:
        if self.legacy is not None:
            return self.legacy.state()
        p = self.progress
        order = p.order
        return OrderState(
            workflow_id=self.workflow_id, business_key=self.input.business_key, channel=self.input.channel,
            order_id=order.order_id if order else None, stage=p.stage,
            mode=str(order.fulfillment.mode) if order else None, currency=order.currency if order else None,
            payment_id=order.payment.payment_id if order else None, decision=p.decision,
            lines=p.lines, shipments=p.shipments, picked_locations=p.picked_locations,
            payment_voided=p.payment_voided, cancel_reason=p.cancel_reason,
            intercepted_locations=p.intercepted, awaiting_dispatch=p.awaiting_dispatch,
            exception_cases=[ref.model_dump(mode="json") for ref in self.cases.refs()],
            held_events=[str(e.type) for e in self.inbox.pending],
        )

    # --- placement -------------------------------------------------------------------------------------
    async def _place(self, event: Event) -> None:
        """Everything up to the decision runs as local activities of this workflow task (one action, no round
        trip); the view is shown once, with the decision."""
        assert isinstance(event.data, OrderPlaced)
        p = self.progress
        self.placing = True
        p.stage = OrderStage.RESERVING
        try:
            order = p.order = event.data
            placed_at = workflow.now()
            self.log.info("order placed", lines=len(order.lines), mode=str(order.fulfillment.mode))
            await self._build_lines(order)
            await self._reserve(order)
            if self.policy.partial is PartialPolicy.REJECT and any(
                ln.reserved < ln.ordered or ln.reason for ln in p.lines
            ) and any(ln.reserved for ln in p.lines):
                await self._release_all("reject", "partial order rejected whole (channel policy)")
                for ln in p.lines:
                    ln.reason = ln.reason or "order rejected whole: the channel does not accept partial orders"
            p.decision = rules.decide(self.workflow_id, p.lines)
            if p.decision.decision is Decision.REJECTED:
                p.stage = OrderStage.REJECTED
            else:
                p.stage = OrderStage.AWAITING_PICK
                self.cases.start_clock(SlaKind.AUTHORIZATION_EXPIRING, since=placed_at)
                self.cases.start_clock(SlaKind.PICK_OVERDUE)
                if order.fulfillment.mode is FulfillmentMode.SHIP:
                    self.cases.start_clock(SlaKind.SHIP_OVERDUE)
            self.log.info("order decided", decision=str(p.decision.decision))
        finally:
            self.placing = False
            self.refresh()

    async def _build_lines(self, order: OrderPlaced) -> None:
        found = await call_local(ErpActivities.lookup_items, LookupItemsInput(skus=[ln.sku for ln in order.lines]),
                                 summary=f"look up {len(order.lines)} SKUs")
        for ol in order.lines:
            line = LineState(line_id=ol.line_id, sku=ol.sku, uom=ol.uom, ordered_uom_quantity=ol.quantity,
                             amount=line_amount(ol))
            item = found.items.get(ol.sku)
            if item is None:
                line.reason = f"unknown SKU {ol.sku!r}"
            elif refused := rules.currency_refusal(ol.sku, item.currency, order.currency):
                line.reason = refused
            else:
                try:
                    line.ordered = item.to_base_units(ol.quantity, ol.uom)
                    line.unit_price = rules.unit_price_per_ea(ol.unit_price, item.units[ol.uom])
                except DomainError as refusal:
                    line.reason = str(refusal)
            self.progress.lines.append(line)

    async def _reserve(self, order: OrderPlaced) -> None:
        lines = self.progress.lines
        mode = order.fulfillment.mode
        pickup = order.fulfillment.location_id if mode is FulfillmentMode.PICKUP else None
        if mode is FulfillmentMode.PICKUP and pickup is None:
            for ln in lines:
                ln.reason = ln.reason or "a pickup order names its pickup store"
            return

        def plan(left: Mapping[str, tuple[str, int]], available: AvailabilityResult) -> dict[str, dict[str, int]]:
            stock = {(r.sku, r.location_id): r.available for r in available.rows}
            return rules.by_location(rules.choose_sources(
                dict(left), stock, pickup_location=pickup, preferred=order.fulfillment.location_id,
                candidates=[pickup] if pickup else sorted({r.location_id for r in available.rows})))

        reserved = await reserve_with_retry(
            self, {ln.line_id: (ln.sku, ln.ordered) for ln in lines if ln.ordered and ln.reason is None},
            location_ids=[pickup] if pickup else None, plan=plan, lines=self._lines_at, reason="reserve for order",
            local=True)
        by_id = {ln.line_id: ln for ln in lines}
        for location, share in reserved.at.items():
            for line_id, qty in share.items():
                by_id[line_id].reserved, by_id[line_id].location_id = qty, location
        for line_id in reserved.unplaced:  # never reserved
            by_id[line_id].reason = "insufficient stock" + (f" at {pickup}" if pickup else "")
        for ln in lines:
            if ln.reason is None and 0 < ln.reserved < ln.ordered:
                ln.reason = f"only {ln.reserved} of {ln.ordered} EA available"
        self._scope()

    def _scope(self) -> None:
        lines = self.progress.lines
        self.cases.scope(location_ids=[ln.location_id for ln in lines if ln.location_id],
                         skus=[ln.sku for ln in lines if ln.ordered])

    # --- fulfilment ------------------------------------------------------------------------------------
    def _holding(self) -> bool:
        return any(ln.open_units for ln in self.progress.lines)

    def _applicable(self) -> Event | None:
        """The oldest held event whose turn has come (events are applied in arrival order among those)."""
        p = self.progress
        pickup = self._is_pickup()
        for event in self.inbox.pending:
            data = event.data
            if isinstance(data, OrderCancelled):
                return event
            if isinstance(data, FulfillmentPicked):
                if data.location_id in p.picked_locations or self._reserved_at(data.location_id):
                    return event  # (a repeated pick of a picked location is applied as a no-op)
            elif isinstance(data, ShipmentDispatched) and not pickup:
                if data.location_id in p.intercepted:
                    return event  # the parcel left although the cancel put its units back: the truth
                if any(s.shipment_id == data.shipment_id for s in p.shipments) or \
                        (data.location_id in p.picked_locations and not self._reserved_at(data.location_id)):
                    return event
            elif isinstance(data, OrderCollected) and pickup:
                if data.location_id in p.picked_locations and not self._reserved_at(data.location_id):
                    return event
        return None

    async def _picked(self, data: FulfillmentPicked) -> None:
        p = self.progress
        location = data.location_id
        if location in p.picked_locations:
            self.log.warning("pick already applied for this location", location_id=location)
            return
        reported = {ln.line_id: ln.quantity for ln in data.lines}
        picks: dict[str, int] = {}
        shorts: dict[str, int] = {}
        for ln in p.lines:
            if ln.location_id != location or not ln.reserved:
                continue
            got, short = rules.pick_result(ln.reserved, reported.get(ln.line_id, 0))
            if got:
                picks[ln.line_id] = got
            if short:
                shorts[ln.line_id] = short
        if picks:
            await call_local(ErpActivities.post_movement, self.movement(
                f"pick:{location}", MovementKind.PICK, self._lines_at(location, picks), "picked for order"),
                summary=f"pick {sum(picks.values())} units at {location}")
        if shorts:
            await call_local(ErpActivities.post_movement, self.movement(
                f"short-release:{location}", MovementKind.RELEASE, self._lines_at(location, shorts),
                "short pick: missing units released"),
                summary=f"release {sum(shorts.values())} short-picked units at {location}")
        by_id = {ln.line_id: ln for ln in p.lines}
        for line_id, qty in picks.items():
            by_id[line_id].reserved -= qty
            by_id[line_id].picked += qty
        for line_id, qty in shorts.items():
            by_id[line_id].reserved -= qty
            by_id[line_id].released += qty
        p.picked_locations.append(location)
        if shorts:
            self.cases.open_case(CaseKind.SHORT_PICK, summary=(
                f"Short pick at {location}: {sum(shorts.values())} EA missing on {len(shorts)} line(s)"),
                details={f"line {k}": f"{v} EA short" for k, v in shorts.items()} | {"location_id": location})
        self.log.info("picked", location_id=location, picked=sum(picks.values()), short=sum(shorts.values()))
        if not any(ln.reserved for ln in p.lines):
            self.cases.stop_clock(SlaKind.PICK_OVERDUE, by=str(EventType.FULFILLMENT_PICKED))
            if self._is_pickup() and any(ln.picked for ln in p.lines):
                self.cases.start_clock(SlaKind.PICKUP_EXPIRED)
        p.stage = self._stage()

    async def _dispatched(self, data: ShipmentDispatched) -> None:
        p = self.progress
        if any(s.shipment_id == data.shipment_id for s in p.shipments):
            self.log.info("shipment already applied", shipment_id=data.shipment_id)
            return
        if data.location_id in p.intercepted:
            await self._dispatched_after_cancel(data)
            return
        requested = self._requested(data)
        moves = {}
        for ln in p.lines:
            if ln.location_id == data.location_id and ln.line_id in requested:
                qty = rules.ship_quantity(ln.picked, requested[ln.line_id])
                if qty:
                    moves[ln.line_id] = qty
        if not moves:
            self.log.warning("dispatch with nothing picked to ship", shipment_id=data.shipment_id)
            return
        await self._hand_over(data.shipment_id, data.location_id, moves, data.carrier, data.tracking_number)

    async def _collected(self, data: OrderCollected) -> None:
        moves = {ln.line_id: ln.picked for ln in self.progress.lines
                 if ln.location_id == data.location_id and ln.picked}
        if moves:
            await self._hand_over(f"pickup-{self._order().order_id}", data.location_id, moves, None, None)

    async def _hand_over(self, shipment_id: str, location: str, moves: dict[str, int], carrier: str | None,
                         tracking: str | None, *, bill: bool = True) -> None:
        """SHIP out of picked and record the shipment in the WMS (local activities of one task), then hand it
        to ShipToSettle: now when more will follow, by `close` when it ends the order (it carries the close).
        `bill` False: a parcel that left after its payment was voided is not handed over."""
        p = self.progress
        order = self._order()
        by_id = {ln.line_id: ln for ln in p.lines}
        charged = {i: rules.charged_amount(by_id[i], q) for i, q in moves.items()}  # each line's share, to the cent
        await call_local(ErpActivities.post_movement, self.movement(
            f"ship:{shipment_id}", MovementKind.SHIP, self._lines_at(location, moves),
            "collected by the customer" if carrier is None else f"shipped by {carrier}", reference=shipment_id),
            summary=f"ship {sum(moves.values())} units from {location} ({shipment_id})")
        await call_local(WmsActivities.record_shipment, ShipmentRecord(
            key=f"{self.workflow_id}:shipment:{shipment_id}", shipment_id=shipment_id, channel=order.channel,
            order_id=order.order_id, location_id=location, carrier=carrier, tracking_number=tracking,
            lines=[ShippedLine(line_id=i, sku=by_id[i].sku, quantity=q, unit_price=by_id[i].unit_price,
                               currency=order.currency, amount=charged[i]) for i, q in moves.items()],
            payment_id=order.payment.payment_id,
        ), summary=f"record shipment {shipment_id}")
        for line_id, qty in moves.items():
            by_id[line_id].picked -= qty
            by_id[line_id].shipped += qty
        amount = sum(charged.values(), start=Decimal(0))
        p.shipments.append(ShipmentState(shipment_id=shipment_id, location_id=location, carrier=carrier,
                                         tracking_number=tracking, lines=dict(moves), amount=amount, billed=bill))
        if len(p.shipments) == 1:
            self.cases.stop_clock(SlaKind.SHIP_OVERDUE, by=str(EventType.SHIPMENT_DISPATCHED))
            self.cases.stop_clock(SlaKind.AUTHORIZATION_EXPIRING, by=str(EventType.SHIPMENT_DISPATCHED))
        if self._is_pickup():
            self.cases.stop_clock(SlaKind.PICKUP_EXPIRED, by=str(EventType.ORDER_COLLECTED))
        p.stage = self._stage()
        if not bill:
            self.log.warning("shipped after cancel, not billed: the payment was voided", shipment_id=shipment_id,
                             units=sum(moves.values()), amount=str(amount))
            return
        shipped = OrderShipped(
            order_id=order.order_id, channel=order.channel, shipment_id=shipment_id, location_id=location,
            currency=order.currency, payment=order.payment,
            lines=[PricedLine(line_id=i, sku=by_id[i].sku, quantity=q, unit_price=by_id[i].unit_price,
                              amount=charged[i]) for i, q in moves.items()])
        if not self._holding() and self._dispatch_after_cancel() is None:  # the order ends with this shipment
            self.last_shipped = shipped
            return
        await call_local(RoutingActivities.forward_event,
                         self._internal_event(f"shipped:{shipment_id}", EventType.ORDER_SHIPPED, shipped),
                         summary=f"shipment {shipment_id} to ShipToSettle")
        self.log.info("handed over", shipment_id=shipment_id, units=sum(moves.values()))

    # --- compensation ----------------------------------------------------------------------------------
    async def _cancel(self, reason: str, *, by: str) -> None:
        if not self._is_pickup():
            await self._cancel_ship(reason, by=by)
            return
        p = self.progress
        if p.cancel_reason is not None and not self._holding():
            self.cancel_result = self._cancel_summary([], voided=p.payment_voided)
            return
        p.cancel_reason = reason
        released = await self._release_all("cancel", f"order cancelled: {reason}")
        self._stop_clocks(by=by)
        if not p.shipments:
            await self._void(f"order cancelled: {reason}")
        self.cancel_result = self._cancel_summary(released, voided=p.payment_voided)
        self.log.info("order cancelled", reason=reason, by=by,
                      released=sum(r.released + r.unpicked for r in released))
        p.stage = self._stage()

    async def _cancel_ship(self, reason: str, *, by: str) -> None:
        """A cancel is a request the WMS answers, per location still holding units. `intercepted`: the units go
        back (release / unpick). `already_dispatched`: the parcel left, its units stay picked and the order waits
        for its shipment.dispatched, billed through the normal hand-over (the payment is not voided while a
        parcel is on its way)."""
        p = self.progress
        order = self._order()
        ask = [loc for loc in sorted({ln.location_id for ln in p.lines if ln.location_id and ln.open_units})
               if loc not in p.awaiting_dispatch]
        if p.cancel_reason is not None and not ask:
            self.cancel_result = self._cancel_summary([], voided=p.payment_voided)
            return
        p.cancel_reason = reason
        released: list[ReleasedLine] = []
        for location in ask:
            answer = await call(WmsActivities.cancel_fulfillment, CancelFulfillmentInput(
                key=f"{self.workflow_id}:cancel-fulfillment:{location}", channel=order.channel,
                order_id=order.order_id, location_id=location, reason=reason,
            ), summary=f"ask the WMS to intercept the order at {location}")
            if answer.answer is InterceptAnswer.ALREADY_DISPATCHED:
                p.awaiting_dispatch.append(location)
                self.log.warning("cancel: the WMS says the parcel already left; waiting for its dispatch",
                                 location_id=location)
                continue
            p.intercepted.append(location)
            released += await self._release_all("cancel", f"order cancelled: {reason}", locations={location})
        if not p.awaiting_dispatch:
            self._stop_clocks(by=by)
            if not p.shipments:
                await self._void(f"order cancelled: {reason}")
        self.cancel_result = self._cancel_summary(released, voided=p.payment_voided)
        self.log.info("order cancelled", reason=reason, by=by, intercepted=p.intercepted,
                      awaiting_dispatch=p.awaiting_dispatch, released=sum(r.released + r.unpicked for r in released))
        p.stage = self._stage()

    def _stop_clocks(self, *, by: str) -> None:
        """A cancellation makes a late pick/ship moot (its case resolves), but an expired pickup's case stays
        open for ops: the customer did not come and has to be told."""
        for kind in CLOCKS:
            if not (kind is SlaKind.PICKUP_EXPIRED and self.cases.breached(kind)):
                self.cases.stop_clock(kind, by=by)

    def _dispatch_after_cancel(self) -> Event | None:
        """A held shipment.dispatched from a location the cancel put back: applied before the order closes."""
        for event in self.inbox.pending:
            if isinstance(event.data, ShipmentDispatched) and event.data.location_id in self.progress.intercepted:
                return event
        return None

    async def _dispatched_after_cancel(self, data: ShipmentDispatched) -> None:
        """The parcel left although the cancel put its units back: the dispatch is the truth. The units are taken
        out of the ledger again (RESERVE and PICK from available, then the normal SHIP, each keyed by the
        shipment), and the order is billed for what shipped if its payment was not voided, else a
        `shipped_after_cancel` case opens. Units the ledger no longer has available (promised to another order
        meanwhile) cannot be taken twice: the case says how many, for a count."""
        p = self.progress
        location = data.location_id
        requested = self._requested(data)
        retake: dict[str, int] = {}
        for ln in p.lines:
            if ln.location_id == location and ln.line_id in requested:
                qty = rules.ship_quantity(ln.released, requested[ln.line_id])
                if qty:
                    retake[ln.line_id] = qty
        by_id = {ln.line_id: ln for ln in p.lines}
        missing: dict[str, int] = {}
        if retake:
            try:
                await call_local(ErpActivities.post_movement, self.movement(
                    f"after-cancel-reserve:{data.shipment_id}", MovementKind.RESERVE, self._lines_at(location, retake),
                    "shipped after cancel: units taken back for the parcel that left"),
                    summary=f"reserve {sum(retake.values())} units shipped after cancel at {location}")
            except (ActivityError, ApplicationError) as err:  # a local activity's refusal is not wrapped
                if refusal_type(err) != ErrorType.INSUFFICIENT_STOCK:
                    raise
                missing, retake = retake, {}
        bill = False
        if retake:
            await call_local(ErpActivities.post_movement, self.movement(
                f"after-cancel-pick:{data.shipment_id}", MovementKind.PICK, self._lines_at(location, retake),
                "shipped after cancel"), summary=f"pick {sum(retake.values())} units shipped after cancel")
            for line_id, qty in retake.items():
                by_id[line_id].released -= qty
                by_id[line_id].picked += qty
            bill = not p.payment_voided
            await self._hand_over(data.shipment_id, location, retake, data.carrier, data.tracking_number, bill=bill)
        if not bill:
            shipped = next((s for s in p.shipments if s.shipment_id == data.shipment_id), None)
            details = {"shipment_id": data.shipment_id, "location_id": location,
                       "payment_id": self._order().payment.payment_id,
                       "payment_voided": str(p.payment_voided).lower(),
                       "shipped_units": str(sum(retake.values())),
                       "value": str(shipped.amount) if shipped else "0", "currency": self._order().currency}
            details |= {f"line {k}": f"{v} EA left the building, not available in the ledger: count needed"
                        for k, v in missing.items()}
            self.cases.open_case(CaseKind.SHIPPED_AFTER_CANCEL, summary=(
                f"Shipment {data.shipment_id} left {location} after the order was cancelled "
                + ("and its payment voided: nothing was billed" if p.payment_voided else
                   "and the ledger could not take its units out")), details=details)
        self.log.warning("dispatched after cancel", shipment_id=data.shipment_id, location_id=location,
                         units=sum(retake.values()), billed=bill, missing=sum(missing.values()))
        p.stage = self._stage()

    async def _expire_pickup(self) -> None:
        self.progress.expired = True
        self.log.warning("pickup expired: releasing stock, cancelling, voiding")
        await self._cancel("pickup not collected in time", by=str(SlaKind.PICKUP_EXPIRED))

    def _cancel_summary(self, released: list[ReleasedLine], *, voided: bool) -> CancelResult:
        p = self.progress
        return CancelResult(workflow_id=self.workflow_id, stage=self._stage(), released=released,
                            payment_voided=voided, shipped_units=sum(ln.shipped for ln in p.lines),
                            awaiting_dispatch=list(p.awaiting_dispatch))

    async def _release_all(self, step: str, reason: str, *, locations: set[str] | None = None) -> list[ReleasedLine]:
        """Give back everything still held (at `locations`, or everywhere): RELEASE what is reserved, UNPICK
        what is picked (per location)."""
        out: dict[str, ReleasedLine] = {}
        for bucket, kind in (("reserved", MovementKind.RELEASE), ("picked", MovementKind.UNPICK)):
            for location, lines in self._held_by_location(bucket).items():
                if locations is not None and location not in locations:
                    continue
                qtys = {ln.line_id: getattr(ln, bucket) for ln in lines}
                await call_local(ErpActivities.post_movement, self.movement(
                    f"{step}-{kind}:{location}", kind, self._lines_at(location, qtys), reason),
                    summary=f"{kind} {sum(qtys.values())} units at {location}")
                for ln in lines:
                    entry = out.setdefault(ln.line_id, ReleasedLine(line_id=ln.line_id, sku=ln.sku,
                                                                    location_id=location))
                    qty = getattr(ln, bucket)
                    if bucket == "reserved":
                        entry.released += qty
                        ln.reserved = 0
                    else:
                        entry.unpicked += qty
                        ln.picked = 0
                    ln.released += qty
        return list(out.values())

    async def _void(self, reason: str) -> None:
        p = self.progress
        if p.payment_voided or p.order is None:
            return
        payment = p.order.payment
        await call(PosActivities.void_payment, VoidInput(
            key=f"{self.workflow_id}:void", payment_id=payment.payment_id, reason=reason,
            authorized_amount=payment.authorized_amount, currency=p.order.currency,
        ), summary=f"void payment {payment.payment_id}")
        p.payment_voided = True

    # --- helpers ---------------------------------------------------------------------------------------
    def _order(self) -> OrderPlaced:
        assert self.progress.order is not None
        return self.progress.order

    def _is_pickup(self) -> bool:
        order = self.progress.order
        return order is not None and order.fulfillment.mode is FulfillmentMode.PICKUP

    def _reserved_at(self, location: str) -> bool:
        return any(ln.reserved for ln in self.progress.lines if ln.location_id == location)

    def _pickup_expired(self) -> bool:
        return self._is_pickup() and any(ln.picked for ln in self.progress.lines) and \
            self.cases.breached(SlaKind.PICKUP_EXPIRED)

    def _held_by_location(self, bucket: str) -> dict[str, list[LineState]]:
        out: dict[str, list[LineState]] = {}
        for ln in self.progress.lines:
            if ln.location_id and getattr(ln, bucket):
                out.setdefault(ln.location_id, []).append(ln)
        return dict(sorted(out.items()))

    @staticmethod
    def _requested(data: ShipmentDispatched) -> dict[str, int]:
        """A dispatch's units by order line (a line may be listed twice)."""
        requested: dict[str, int] = {}
        for ql in data.lines:
            requested[ql.line_id] = requested.get(ql.line_id, 0) + ql.quantity
        return requested

    def _lines_at(self, location: str, quantities: Mapping[str, int]) -> list[MovementLine]:
        """Movement lines at `location` for units by order line: one per SKU (two order lines may share one)."""
        by_id = {ln.line_id: ln for ln in self.progress.lines}
        merged: dict[str, int] = {}
        for line_id, qty in quantities.items():
            merged[by_id[line_id].sku] = merged.get(by_id[line_id].sku, 0) + qty
        return [MovementLine(sku=sku, location_id=location, quantity=qty) for sku, qty in sorted(merged.items())]

    def _internal_event(self, step: str, type: EventType, data: EventData) -> Event:
        """An event this order hands over: in the internal namespace no webhook reaches, one identity per step."""
        return Event(event_id=internal_event_id(self.workflow_id, step), type=type, occurred_at=workflow.now(),
                     source="retailflow", data=data)

    def _stage(self) -> OrderStage:
        p = self.progress
        if p.stage in (OrderStage.AWAITING_ORDER, OrderStage.RESERVING, OrderStage.REJECTED,
                       OrderStage.NEVER_OPENED):
            return p.stage
        shipped = any(ln.shipped for ln in p.lines)
        if not self._holding():
            return OrderStage.FULFILLED if shipped else OrderStage.CANCELLED
        if any(ln.reserved for ln in p.lines) and not shipped:
            return OrderStage.AWAITING_PICK
        if shipped:
            return OrderStage.PARTIALLY_SHIPPED
        return OrderStage.AWAITING_COLLECTION if self._is_pickup() else OrderStage.AWAITING_DISPATCH

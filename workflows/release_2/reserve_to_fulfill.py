"""ReserveToFulfill: the order process from placement to hand-over (workflow ID `order:{channel}:{order_id}`).

- `place` (update, order.placed): validate lines against the item master, convert to EA, choose the source,
  reserve with one idempotent movement per location, answer the contract decision. A redelivery answers the
  same decision.
- then `fulfillment.picked` per location (PICK; a short pick releases the missing units and opens a
  `short_pick` case), one or more `shipment.dispatched` (SHIP; recorded in the WMS; each handed to
  ShipToSettle as `order.shipped`), or `order.collected` for a pickup order.
- `order.cancelled` (event) or `cancel` (ops update) before the last hand-over gives back what is still held.
- SLA clocks through ProcessCases: pick_overdue, ship_overdue, authorization_expiring, pickup_expired (acts:
  the stock goes back, the order is cancelled, the authorization voided).
"""
from decimal import Decimal

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.erp import ErpActivities
    from activities.pos import PosActivities
    from activities.routing import RoutingActivities
    from activities.wms import WmsActivities
    from adapters.erp import AvailabilityInput, LookupItemsInput
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
    from domain.inventory import MovementKind, MovementLine, MovementRequest
    from domain.money import round_money
    from domain.order import (
        CancelRequest,
        CancelResult,
        Decision,
        LineState,
        OrderDecision,
        OrderOutcome,
        OrderStage,
        OrderState,
        ReleasedLine,
        ShipmentState,
    )
    from domain.process import PartialPolicy, ProcessInput
    from domain.sla import CaseKind, SlaKind
    from workflows.release_2.calls import call, refusal_type
    from workflows.release_2.common import on_release_2
    from workflows.release_2.process import Inbox, ProcessLog, ProcessView, enter_closed, markdown_table
    from workflows.release_2.sla import ProcessCases

RESERVE_ATTEMPTS = 3  # a reservation that loses a race is re-planned this many times before the line is refused
ACTIVE_STAGES = frozenset({OrderStage.AWAITING_PICK, OrderStage.AWAITING_DISPATCH, OrderStage.AWAITING_COLLECTION,
                           OrderStage.PARTIALLY_SHIPPED})


# (release 2.0 implementation of ReserveToFulfill: its @workflow.defn is the entry in workflows/)
class ReserveToFulfill:
    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        self.v2 = on_release_2()  # first, before any command (workflows/common.py)
        self.input = input
        self.policy = input.policy
        self.inbox = Inbox(input.pending)
        self.view = ProcessView(input.business_key, input.channel)
        self.log = ProcessLog(input.business_key)
        self.cases = ProcessCases(process_type="ReserveToFulfill", business_key=input.business_key,
                                  channel=input.channel, policy=input.policy.sla, view=self.view,
                                  inbox=self.inbox, log=self.log)
        self.workflow_id = workflow.info().workflow_id
        self.stage = OrderStage.AWAITING_ORDER
        self.order: OrderPlaced | None = None
        self.lines: list[LineState] = []
        self.decision: OrderDecision | None = None
        self.placing = False
        self.shipments: list[ShipmentState] = []
        self.picked_locations: list[str] = []
        self.payment_voided = False
        self.cancel_reason: str | None = None
        self.cancel_requests: list[CancelRequest] = []
        self.cancel_result: CancelResult | None = None
        self.expired = False
        self.intercepted: list[str] = []  # release 2: locations the WMS stopped on a cancel (units put back)
        self.awaiting_dispatch: list[str] = []  # release 2: the WMS answered the cancel `already_dispatched`
        self._show()

    # --- run -------------------------------------------------------------------------------------------
    @workflow.run
    async def run(self, input: ProcessInput) -> OrderOutcome:
        if not await self._wait_for_order():
            return await self._finish("never_opened", OrderStage.NEVER_OPENED)
        if self.decision is None and not self.placing:  # order.placed came as a signal, not the update
            placed = self.inbox.take(EventType.ORDER_PLACED)
            if placed is not None:
                await self._place(placed)
        await workflow.wait_condition(lambda: self.decision is not None and not self.placing)
        if self.stage is OrderStage.REJECTED:
            await self._void("order rejected")
            return await self._finish("rejected", OrderStage.REJECTED)
        await self._fulfil()
        return await self._close()

    async def _wait_for_order(self) -> bool:
        try:
            await workflow.wait_condition(
                lambda: self.decision is not None or self.placing or self.inbox.has(EventType.ORDER_PLACED),
                timeout=self.policy.open_timeout,
            )
        except TimeoutError:
            self.log.warning("order never opened", held=[str(e.type) for e in self.inbox.pending])
            return False
        return True

    async def _fulfil(self) -> None:
        """Apply held and arriving events in order, each when its turn has come, until nothing is held."""
        while self._holding() or (self.v2 and self._dispatch_after_cancel() is not None):
            await workflow.wait_condition(
                lambda: bool(self.cancel_requests) or self._pickup_expired() or self._applicable() is not None
            )
            if self.cancel_requests:
                request = self.cancel_requests.pop(0)
                await self._cancel(request.reason, by=f"ops:{request.requested_by}")
                continue
            if self._pickup_expired():
                await self._expire_pickup()
                continue
            event = self._applicable()
            assert event is not None
            self.inbox.pending.remove(event)
            self.inbox.applied_types.append(str(event.type))
            await self._apply(event)
        self.stage = self._stage()
        self._show()

    async def _apply(self, event: Event) -> None:
        data = event.data
        if isinstance(data, OrderCancelled):
            await self._cancel(data.reason, by=str(event.type))
        elif isinstance(data, FulfillmentPicked):
            await self._picked(data)
        elif isinstance(data, ShipmentDispatched):
            await self._dispatched(data)
        elif isinstance(data, OrderCollected):
            await self._collected(data)
        self._show()

    async def _close(self) -> OrderOutcome:
        shipped = sum(ln.shipped for ln in self.lines)
        if self.expired:
            outcome = "expired"
        elif self.cancel_reason is not None:
            outcome = "cancelled" if not shipped else "partially_fulfilled"
        elif shipped and all(ln.shipped == ln.ordered for ln in self.lines):
            outcome = "fulfilled"
        else:
            outcome = "partially_fulfilled" if shipped else "cancelled"
        if self.v2:
            await self._close_v2(outcome)
        elif not self.shipments:
            await self._void(f"nothing shipped ({outcome})")
        else:
            await self._forward(Event(
                event_id=self._internal_id("closed"), type=EventType.ORDER_CLOSED, occurred_at=workflow.now(),
                source="retailflow", data=OrderClosed(order_id=self._order().order_id,
                                                      channel=self._order().channel, outcome=outcome,
                                                      shipment_ids=[s.shipment_id for s in self.shipments]),
            ), summary=f"order closed ({outcome}) to ShipToSettle")
        stage = OrderStage.FULFILLED if shipped else OrderStage.CANCELLED
        return await self._finish(outcome, stage)

    async def _close_v2(self, outcome: str) -> None:
        """Release 2: ShipToSettle is told of the shipments it was handed (a parcel that left after the payment
        was voided was not: its case is with ops); with none, what is left of the authorization is voided."""
        billed = [s.shipment_id for s in self.shipments if s.billed]
        if not billed:
            await self._void(f"nothing billed ({outcome})")
            return
        await self._forward(Event(
            event_id=f"{self.workflow_id}:closed", type=EventType.ORDER_CLOSED, occurred_at=workflow.now(),
            source="retailflow", data=OrderClosed(order_id=self._order().order_id, channel=self._order().channel,
                                                  outcome=outcome, shipment_ids=billed),
        ), summary=f"order closed ({outcome}) to ShipToSettle")

    async def _finish(self, outcome: str, stage: OrderStage) -> OrderOutcome:
        self.stage = stage
        self._show()
        if self.cancel_requests:  # an ops cancel that came in as the last units left: nothing was left to give
            self.cancel_result = self._cancel_summary([], voided=self.payment_voided)
            self.cancel_requests.clear()
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self.cases.drain()
        if self.v2:
            await enter_closed("ReserveToFulfill", self.input.business_key, self.input.channel, outcome, str(stage),
                               self.state(), self.inbox)
        self.log.info("order process ended", outcome=outcome)
        return OrderOutcome(
            workflow_id=self.workflow_id, outcome=outcome, stage=stage,
            shipped_units=sum(ln.shipped for ln in self.lines),
            released_units=sum(ln.released for ln in self.lines),
            shipment_ids=[s.shipment_id for s in self.shipments],
        )

    # --- handlers --------------------------------------------------------------------------------------
    @workflow.signal(name="event", description="A business event of this order (order.cancelled, "
                     "fulfillment.picked, shipment.dispatched, order.collected); held until its turn.")
    def event(self, event: Event) -> None:
        if self.inbox.offer(event):
            self._show()

    @workflow.update(name="place", description="order.placed: reserve and answer the reservation decision; a "
                     "redelivery answers the same decision.")
    async def place(self, event: Event) -> OrderDecision:
        if self.decision is None and not self.placing:
            self.inbox.seen_ids.add(event.event_id)
            await self._place(event)
        await workflow.wait_condition(lambda: self.decision is not None and not self.placing)
        assert self.decision is not None
        return self.decision

    @place.validator
    def _validate_place(self, event: Event) -> None:
        if event.type is not EventType.ORDER_PLACED or not isinstance(event.data, OrderPlaced):
            raise ValueError(f"place takes order.placed, not {event.type}")
        key = f"{event.data.channel}/{event.data.order_id}"
        if key != self.input.business_key:
            raise ValueError(f"order.placed for {key} sent to order {self.input.business_key}")
        if self.stage is OrderStage.NEVER_OPENED:
            raise ValueError("this order process ended without an order; place the order again under a new ID")

    @workflow.update(name="cancel", description="Ops cancels the order: gives back what is still reserved or "
                     "picked and answers what was released.")
    async def cancel(self, request: CancelRequest) -> CancelResult:
        self.cancel_requests.append(request)
        await workflow.wait_condition(lambda: request not in self.cancel_requests and self.cancel_result is not None)
        assert self.cancel_result is not None
        return self.cancel_result

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        if self.decision is None:
            raise ValueError("the order is not placed yet")
        if self.stage not in ACTIVE_STAGES or not self._holding():
            raise ValueError(f"nothing left to cancel: the order is {self.stage}")
        if self.cancel_requests:
            raise ValueError("a cancellation is already under way")

    @workflow.query(name="state", description="The order: stage, lines with quantities by state, shipments, "
                    "exception cases, workflow ID.")
    def state(self) -> OrderState:
        order = self.order
        return OrderState(
            workflow_id=self.workflow_id, business_key=self.input.business_key, channel=self.input.channel,
            order_id=order.order_id if order else None, stage=self.stage,
            mode=str(order.fulfillment.mode) if order else None, currency=order.currency if order else None,
            payment_id=order.payment.payment_id if order else None, decision=self.decision,
            lines=self.lines, shipments=self.shipments, picked_locations=self.picked_locations,
            payment_voided=self.payment_voided, cancel_reason=self.cancel_reason,
            intercepted_locations=self.intercepted, awaiting_dispatch=self.awaiting_dispatch,
            exception_cases=[ref.model_dump(mode="json") for ref in self.cases.refs()],
            held_events=[str(e.type) for e in self.inbox.pending],
        )

    # --- placement -------------------------------------------------------------------------------------
    async def _place(self, event: Event) -> None:
        assert isinstance(event.data, OrderPlaced)
        self.placing = True
        self.stage = OrderStage.RESERVING
        try:
            order = self.order = event.data
            placed_at = workflow.now()
            self.log.info("order placed", lines=len(order.lines), mode=str(order.fulfillment.mode))
            await self._build_lines(order)
            await self._reserve(order)
            if self.policy.partial is PartialPolicy.REJECT and any(
                ln.reserved < ln.ordered or ln.reason for ln in self.lines
            ) and any(ln.reserved for ln in self.lines):
                await self._release_all("reject", "partial order rejected whole (channel policy)")
                for ln in self.lines:
                    ln.reason = ln.reason or "order rejected whole: the channel does not accept partial orders"
            self.decision = rules.decide(self.workflow_id, self.lines)
            if self.decision.decision is Decision.REJECTED:
                self.stage = OrderStage.REJECTED
            else:
                self.stage = OrderStage.AWAITING_PICK
                self.cases.start_clock(SlaKind.AUTHORIZATION_EXPIRING, since=placed_at)
                self.cases.start_clock(SlaKind.PICK_OVERDUE)
                if order.fulfillment.mode is FulfillmentMode.SHIP:
                    self.cases.start_clock(SlaKind.SHIP_OVERDUE)
                await self._create_pick_tasks(order)
            self.log.info("order decided", decision=str(self.decision.decision))
        finally:
            self.placing = False
            self._show()

    async def _build_lines(self, order: OrderPlaced) -> None:
        found = await call(ErpActivities.lookup_items, LookupItemsInput(skus=[ln.sku for ln in order.lines]),
                           summary=f"look up {len(order.lines)} SKUs")
        for ol in order.lines:
            line = LineState(line_id=ol.line_id, sku=ol.sku, uom=ol.uom, ordered_uom_quantity=ol.quantity)
            item = found.items.get(ol.sku)
            if self.v2:
                line.amount = line_amount(ol)
            if item is None:
                line.reason = f"unknown SKU {ol.sku!r}"
            elif self.v2 and (refused := rules.currency_refusal(ol.sku, item.currency, order.currency)):
                line.reason = refused
            else:
                try:
                    line.ordered = item.to_base_units(ol.quantity, ol.uom)
                    line.unit_price = rules.unit_price_per_ea(ol.unit_price, item.units[ol.uom])
                except DomainError as refused:
                    line.reason = str(refused)
            self.lines.append(line)
        self.view.skus([ln.sku for ln in self.lines if ln.ordered])

    async def _reserve(self, order: OrderPlaced) -> None:
        mode = order.fulfillment.mode
        pickup = order.fulfillment.location_id if mode is FulfillmentMode.PICKUP else None
        if mode is FulfillmentMode.PICKUP and pickup is None:
            for ln in self.lines:
                ln.reason = ln.reason or "a pickup order names its pickup store"
            return
        todo = {ln.line_id: (ln.sku, ln.ordered) for ln in self.lines if ln.ordered and ln.reason is None}
        by_id = {ln.line_id: ln for ln in self.lines}
        for attempt in range(RESERVE_ATTEMPTS):
            if not todo:
                break
            rows = await call(ErpActivities.get_availability, AvailabilityInput(
                skus=sorted({sku for sku, _ in todo.values()}), location_ids=[pickup] if pickup else None,
            ), summary=f"availability of {len(todo)} lines")
            available = {(r.sku, r.location_id): r.available for r in rows.rows}
            plan = rules.choose_sources(todo, available, pickup_location=pickup,
                                        preferred=order.fulfillment.location_id,
                                        candidates=[pickup] if pickup else sorted({r.location_id for r in rows.rows}))
            if not plan:
                break
            lost: list[str] = []
            for location, lines in rules.by_location(plan).items():
                suffix = f":{attempt}" if attempt else ""
                request = self._movement(
                    f"reserve:{location}{suffix}", MovementKind.RESERVE, location, lines, "reserve for order")
                try:
                    await call(ErpActivities.post_movement, request,
                               summary=f"reserve {sum(lines.values())} units at {location}")
                except ActivityError as err:
                    if refusal_type(err) != ErrorType.INSUFFICIENT_STOCK:
                        raise
                    self.log.warning("reservation lost a race, re-planning", location_id=location,
                                     attempt=attempt)
                    lost += list(lines)
                    continue
                for line_id, qty in lines.items():
                    ln = by_id[line_id]
                    ln.reserved, ln.location_id = qty, location
                    todo.pop(line_id)
            if not lost:
                break
        for line_id in todo:  # never reserved
            by_id[line_id].reason = "insufficient stock" + (f" at {pickup}" if pickup else "")
        for ln in self.lines:
            if ln.reason is None and 0 < ln.reserved < ln.ordered:
                ln.reason = f"only {ln.reserved} of {ln.ordered} EA available"
        self.view.locations([ln.location_id for ln in self.lines if ln.location_id])
        self.cases.scope(location_ids=[ln.location_id for ln in self.lines if ln.location_id],
                         skus=[ln.sku for ln in self.lines if ln.ordered])

    async def _create_pick_tasks(self, order: OrderPlaced) -> None:
        for location, lines in self._held_by_location("reserved").items():
            await call(WmsActivities.create_pick_task, PickTaskInput(
                key=f"{self.workflow_id}:pick-task:{location}", channel=order.channel, order_id=order.order_id,
                location_id=location,
                lines=[TaskLine(line_id=ln.line_id, sku=ln.sku, quantity=ln.reserved) for ln in lines],
            ), summary=f"pick task at {location}")

    # --- fulfilment ------------------------------------------------------------------------------------
    def _holding(self) -> bool:
        return any(ln.open_units for ln in self.lines)

    def _applicable(self) -> Event | None:
        """The oldest held event whose turn has come (events are applied in arrival order among those)."""
        pickup = self._is_pickup()
        for event in self.inbox.pending:
            data = event.data
            if isinstance(data, OrderCancelled):
                return event
            if isinstance(data, FulfillmentPicked):
                if data.location_id in self.picked_locations or self._reserved_at(data.location_id):
                    return event  # (a repeated pick of a picked location is applied as a no-op)
            elif isinstance(data, ShipmentDispatched) and not pickup:
                if self.v2 and data.location_id in self.intercepted:
                    return event  # the parcel left although the cancel put its units back: the truth
                if any(s.shipment_id == data.shipment_id for s in self.shipments) or \
                        (data.location_id in self.picked_locations and not self._reserved_at(data.location_id)):
                    return event
            elif isinstance(data, OrderCollected) and pickup:
                if data.location_id in self.picked_locations and not self._reserved_at(data.location_id):
                    return event
        return None

    async def _picked(self, data: FulfillmentPicked) -> None:
        location = data.location_id
        if location in self.picked_locations:
            self.log.warning("pick already applied for this location", location_id=location)
            return
        reported = {ln.line_id: ln.quantity for ln in data.lines}
        picks: dict[str, int] = {}
        shorts: dict[str, int] = {}
        for ln in self.lines:
            if ln.location_id != location or not ln.reserved:
                continue
            got, short = rules.pick_result(ln.reserved, reported.get(ln.line_id, 0))
            if got:
                picks[ln.line_id] = got
            if short:
                shorts[ln.line_id] = short
        by_id = {ln.line_id: ln for ln in self.lines}
        if picks:
            await call(ErpActivities.post_movement,
                       self._movement(f"pick:{location}", MovementKind.PICK, location, picks, "picked for order"),
                       summary=f"pick {sum(picks.values())} units at {location}")
        if shorts:
            await call(ErpActivities.post_movement,
                       self._movement(f"short-release:{location}", MovementKind.RELEASE, location, shorts,
                                      "short pick: missing units released"),
                       summary=f"release {sum(shorts.values())} short-picked units at {location}")
        for line_id, qty in picks.items():
            by_id[line_id].reserved -= qty
            by_id[line_id].picked += qty
        for line_id, qty in shorts.items():
            by_id[line_id].reserved -= qty
            by_id[line_id].released += qty
        self.picked_locations.append(location)
        if shorts:
            self.cases.open_case(CaseKind.SHORT_PICK, summary=(
                f"Short pick at {location}: {sum(shorts.values())} EA missing on {len(shorts)} line(s)"),
                details={f"line {k}": f"{v} EA short" for k, v in shorts.items()} | {"location_id": location})
        self.log.info("picked", location_id=location, picked=sum(picks.values()), short=sum(shorts.values()))
        if not any(ln.reserved for ln in self.lines):
            self.cases.stop_clock(SlaKind.PICK_OVERDUE, by=str(EventType.FULFILLMENT_PICKED))
            if self._is_pickup() and any(ln.picked for ln in self.lines):
                self.cases.start_clock(SlaKind.PICKUP_EXPIRED)
        self.stage = self._stage()

    async def _dispatched(self, data: ShipmentDispatched) -> None:
        if any(s.shipment_id == data.shipment_id for s in self.shipments):
            self.log.info("shipment already applied", shipment_id=data.shipment_id)
            return
        if self.v2 and data.location_id in self.intercepted:
            await self._dispatched_after_cancel(data)
            return
        requested = {}
        for ql in data.lines:
            requested[ql.line_id] = requested.get(ql.line_id, 0) + ql.quantity
        moves = {}
        for ln in self.lines:
            if ln.location_id == data.location_id and ln.line_id in requested:
                qty = rules.ship_quantity(ln.picked, requested[ln.line_id])
                if qty:
                    moves[ln.line_id] = qty
        if not moves:
            self.log.warning("dispatch with nothing picked to ship", shipment_id=data.shipment_id)
            return
        await self._hand_over(data.shipment_id, data.location_id, moves, data.carrier, data.tracking_number)

    async def _collected(self, data: OrderCollected) -> None:
        moves = {ln.line_id: ln.picked for ln in self.lines if ln.location_id == data.location_id and ln.picked}
        if moves:
            await self._hand_over(f"pickup-{self._order().order_id}", data.location_id, moves, None, None)

    async def _hand_over(self, shipment_id: str, location: str, moves: dict[str, int], carrier: str | None,
                         tracking: str | None, *, bill: bool = True) -> None:
        """SHIP out of picked, record the shipment in the WMS, hand it to ShipToSettle (unless `bill` is False:
        a parcel that left after its payment was voided, release 2)."""
        order = self._order()
        by_id = {ln.line_id: ln for ln in self.lines}
        await call(ErpActivities.post_movement,
                   self._movement(f"ship:{shipment_id}", MovementKind.SHIP, location, moves,
                                  "collected by the customer" if carrier is None else f"shipped by {carrier}",
                                  reference=shipment_id),
                   summary=f"ship {sum(moves.values())} units from {location} ({shipment_id})")
        if self.v2:  # release 2: each line's charged share, to the cent, travels with the shipment
            charged = {i: rules.charged_amount(by_id[i], q) for i, q in moves.items()}
            shipped_lines = [ShippedLine(line_id=i, sku=by_id[i].sku, quantity=q, unit_price=by_id[i].unit_price,
                                         currency=order.currency, amount=charged[i]) for i, q in moves.items()]
            await call(WmsActivities.record_shipment, ShipmentRecord(
                key=f"{self.workflow_id}:shipment:{shipment_id}", shipment_id=shipment_id, channel=order.channel,
                order_id=order.order_id, location_id=location, carrier=carrier, tracking_number=tracking,
                lines=shipped_lines, payment_id=order.payment.payment_id,
            ), summary=f"record shipment {shipment_id}")
        else:
            charged = {}
            shipped_lines = [ShippedLine(line_id=i, sku=by_id[i].sku, quantity=q, unit_price=by_id[i].unit_price,
                                         currency=order.currency) for i, q in moves.items()]
            await call(WmsActivities.record_shipment, ShipmentRecord(
                key=f"{self.workflow_id}:shipment:{shipment_id}", shipment_id=shipment_id, channel=order.channel,
                order_id=order.order_id, location_id=location, carrier=carrier, tracking_number=tracking,
                lines=shipped_lines,
            ), summary=f"record shipment {shipment_id}")
        for line_id, qty in moves.items():
            by_id[line_id].picked -= qty
            by_id[line_id].shipped += qty
        if self.v2:
            amount = sum(charged.values(), start=Decimal(0))
        else:
            amount = round_money(sum((by_id[i].unit_price * q for i, q in moves.items()), start=Decimal(0)))
        self.shipments.append(ShipmentState(shipment_id=shipment_id, location_id=location, carrier=carrier,
                                            tracking_number=tracking, lines=dict(moves), amount=amount,
                                            billed=bill))
        if len(self.shipments) == 1:
            self.cases.stop_clock(SlaKind.SHIP_OVERDUE, by=str(EventType.SHIPMENT_DISPATCHED))
            self.cases.stop_clock(SlaKind.AUTHORIZATION_EXPIRING, by=str(EventType.SHIPMENT_DISPATCHED))
        if self._is_pickup():
            self.cases.stop_clock(SlaKind.PICKUP_EXPIRED, by=str(EventType.ORDER_COLLECTED))
        self.stage = self._stage()
        self._show()
        if not bill:
            self.log.warning("shipped after cancel, not billed: the payment was voided", shipment_id=shipment_id,
                             units=sum(moves.values()), amount=str(amount))
            return
        await self._forward(Event(
            event_id=self._internal_id(f"shipped:{shipment_id}"), type=EventType.ORDER_SHIPPED,
            occurred_at=workflow.now(), source="retailflow",
            data=OrderShipped(order_id=order.order_id, channel=order.channel, shipment_id=shipment_id,
                              location_id=location, currency=order.currency, payment=order.payment,
                              lines=[PricedLine(line_id=i, sku=by_id[i].sku, quantity=q,
                                                unit_price=by_id[i].unit_price, amount=charged.get(i))
                                     for i, q in moves.items()]),
        ), summary=f"shipment {shipment_id} to ShipToSettle")
        self.log.info("handed over", shipment_id=shipment_id, units=sum(moves.values()))

    # --- compensation ----------------------------------------------------------------------------------
    async def _cancel(self, reason: str, *, by: str) -> None:
        if self.v2 and not self._is_pickup():
            await self._cancel_v2(reason, by=by)
            return
        if self.cancel_reason is not None and not self._holding():
            self.cancel_result = self._cancel_summary([], voided=self.payment_voided)
            return
        self.cancel_reason = reason
        released = await self._release_all("cancel", f"order cancelled: {reason}")
        for kind in (SlaKind.PICK_OVERDUE, SlaKind.SHIP_OVERDUE, SlaKind.AUTHORIZATION_EXPIRING,
                     SlaKind.PICKUP_EXPIRED):
            # a cancellation makes a late pick/ship moot (its case resolves), but an expired pickup's case
            # stays open for ops: the customer did not come and has to be told
            if not (kind is SlaKind.PICKUP_EXPIRED and self.cases.breached(kind)):
                self.cases.stop_clock(kind, by=by)
        if not self.shipments:
            await self._void(f"order cancelled: {reason}")
        self.cancel_result = self._cancel_summary(released, voided=self.payment_voided)
        self.log.info("order cancelled", reason=reason, by=by,
                      released=sum(r.released + r.unpicked for r in released))
        self.stage = self._stage()

    async def _cancel_v2(self, reason: str, *, by: str) -> None:
        """Release 2: a cancel is a request the WMS answers, per location still holding units. `intercepted`:
        the units go back (release / unpick, as in 1.0). `already_dispatched`: the parcel left, its units stay
        picked and the order waits for its shipment.dispatched, billed through the normal hand-over (the payment
        is not voided while a parcel is on its way)."""
        order = self._order()
        ask = [loc for loc in sorted({ln.location_id for ln in self.lines if ln.location_id and ln.open_units})
               if loc not in self.awaiting_dispatch]
        if self.cancel_reason is not None and not ask:
            self.cancel_result = self._cancel_summary([], voided=self.payment_voided)
            return
        self.cancel_reason = reason
        released: list[ReleasedLine] = []
        for location in ask:
            answer = await call(WmsActivities.cancel_fulfillment, CancelFulfillmentInput(
                key=f"{self.workflow_id}:cancel-fulfillment:{location}", channel=order.channel,
                order_id=order.order_id, location_id=location, reason=reason,
            ), summary=f"ask the WMS to intercept the order at {location}")
            if answer.answer is InterceptAnswer.ALREADY_DISPATCHED:
                self.awaiting_dispatch.append(location)
                self.log.warning("cancel: the WMS says the parcel already left; waiting for its dispatch",
                                 location_id=location)
                continue
            self.intercepted.append(location)
            released += await self._release_all("cancel", f"order cancelled: {reason}", locations={location})
        if not self.awaiting_dispatch:
            for kind in (SlaKind.PICK_OVERDUE, SlaKind.SHIP_OVERDUE, SlaKind.AUTHORIZATION_EXPIRING,
                         SlaKind.PICKUP_EXPIRED):
                if not (kind is SlaKind.PICKUP_EXPIRED and self.cases.breached(kind)):
                    self.cases.stop_clock(kind, by=by)
            if not self.shipments:
                await self._void(f"order cancelled: {reason}")
        self.cancel_result = self._cancel_summary(released, voided=self.payment_voided)
        self.log.info("order cancelled", reason=reason, by=by, intercepted=self.intercepted,
                      awaiting_dispatch=self.awaiting_dispatch,
                      released=sum(r.released + r.unpicked for r in released))
        self.stage = self._stage()

    def _dispatch_after_cancel(self) -> Event | None:
        """A held shipment.dispatched from a location the cancel put back (release 2): applied before close."""
        for event in self.inbox.pending:
            if isinstance(event.data, ShipmentDispatched) and event.data.location_id in self.intercepted:
                return event
        return None

    async def _dispatched_after_cancel(self, data: ShipmentDispatched) -> None:
        """The parcel left although the cancel put its units back (release 2): the dispatch is the truth. The
        units are taken out of the ledger again (RESERVE and PICK from available, then the normal SHIP, each
        keyed by the shipment), and the order is billed for what shipped if its payment was not voided, else a
        `shipped_after_cancel` case opens. Units the ledger no longer has available (promised to another order
        meanwhile) cannot be taken twice: the case says how many, for a count."""
        location = data.location_id
        requested: dict[str, int] = {}
        for ql in data.lines:
            requested[ql.line_id] = requested.get(ql.line_id, 0) + ql.quantity
        retake: dict[str, int] = {}
        for ln in self.lines:
            if ln.location_id == location and ln.line_id in requested:
                qty = rules.ship_quantity(ln.released, requested[ln.line_id])
                if qty:
                    retake[ln.line_id] = qty
        by_id = {ln.line_id: ln for ln in self.lines}
        missing: dict[str, int] = {}
        if retake:
            try:
                await call(ErpActivities.post_movement, self._movement(
                    f"after-cancel-reserve:{data.shipment_id}", MovementKind.RESERVE, location, retake,
                    "shipped after cancel: units taken back for the parcel that left"),
                    summary=f"reserve {sum(retake.values())} units shipped after cancel at {location}")
            except ActivityError as err:
                if refusal_type(err) != ErrorType.INSUFFICIENT_STOCK:
                    raise
                missing, retake = retake, {}
        if retake:
            await call(ErpActivities.post_movement, self._movement(
                f"after-cancel-pick:{data.shipment_id}", MovementKind.PICK, location, retake,
                "shipped after cancel"), summary=f"pick {sum(retake.values())} units shipped after cancel")
            for line_id, qty in retake.items():
                by_id[line_id].released -= qty
                by_id[line_id].picked += qty
            bill = not self.payment_voided
            await self._hand_over(data.shipment_id, location, retake, data.carrier, data.tracking_number, bill=bill)
        else:
            bill = False
        if not bill:
            shipped = next((s for s in self.shipments if s.shipment_id == data.shipment_id), None)
            details = {"shipment_id": data.shipment_id, "location_id": location,
                       "payment_id": self._order().payment.payment_id,
                       "payment_voided": str(self.payment_voided).lower(),
                       "shipped_units": str(sum(retake.values())),
                       "value": str(shipped.amount) if shipped else "0", "currency": self._order().currency}
            details |= {f"line {k}": f"{v} EA left the building, not available in the ledger: count needed"
                        for k, v in missing.items()}
            self.cases.open_case(CaseKind.SHIPPED_AFTER_CANCEL, summary=(
                f"Shipment {data.shipment_id} left {location} after the order was cancelled "
                + ("and its payment voided: nothing was billed" if self.payment_voided else
                   "and the ledger could not take its units out")), details=details)
        self.log.warning("dispatched after cancel", shipment_id=data.shipment_id, location_id=location,
                         units=sum(retake.values()), billed=bill, missing=sum(missing.values()))
        self.stage = self._stage()

    async def _expire_pickup(self) -> None:
        self.expired = True
        self.log.warning("pickup expired: releasing stock, cancelling, voiding")
        await self._cancel("pickup not collected in time", by=str(SlaKind.PICKUP_EXPIRED))

    def _cancel_summary(self, released: list[ReleasedLine], *, voided: bool) -> CancelResult:
        return CancelResult(workflow_id=self.workflow_id, stage=self._stage(), released=released,
                            payment_voided=voided, shipped_units=sum(ln.shipped for ln in self.lines),
                            awaiting_dispatch=list(self.awaiting_dispatch))

    async def _release_all(self, step: str, reason: str, *, locations: set[str] | None = None) -> list[ReleasedLine]:
        """Give back everything still held (at `locations`, or everywhere): RELEASE what is reserved, UNPICK
        what is picked (per location)."""
        out: dict[str, ReleasedLine] = {}
        for bucket, kind in (("reserved", MovementKind.RELEASE), ("picked", MovementKind.UNPICK)):
            for location, lines in self._held_by_location(bucket).items():
                if locations is not None and location not in locations:
                    continue
                qtys = {ln.line_id: getattr(ln, bucket) for ln in lines}
                await call(ErpActivities.post_movement,
                           self._movement(f"{step}-{kind}:{location}", kind, location, qtys, reason),
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
        if self.payment_voided or self.order is None:
            return
        payment = self.order.payment
        await call(PosActivities.void_payment, VoidInput(
            key=f"{self.workflow_id}:void", payment_id=payment.payment_id, reason=reason,
            authorized_amount=payment.authorized_amount, currency=self.order.currency,
        ), summary=f"void payment {payment.payment_id}")
        self.payment_voided = True

    # --- helpers ---------------------------------------------------------------------------------------
    def _order(self) -> OrderPlaced:
        assert self.order is not None
        return self.order

    def _is_pickup(self) -> bool:
        return self.order is not None and self.order.fulfillment.mode is FulfillmentMode.PICKUP

    def _reserved_at(self, location: str) -> bool:
        return any(ln.reserved for ln in self.lines if ln.location_id == location)

    def _pickup_expired(self) -> bool:
        return self._is_pickup() and any(ln.picked for ln in self.lines) and \
            self.cases.breached(SlaKind.PICKUP_EXPIRED)

    def _held_by_location(self, bucket: str) -> dict[str, list[LineState]]:
        out: dict[str, list[LineState]] = {}
        for ln in self.lines:
            if ln.location_id and getattr(ln, bucket):
                out.setdefault(ln.location_id, []).append(ln)
        return dict(sorted(out.items()))

    def _movement(self, step: str, kind: MovementKind, location: str, quantities: dict[str, int], reason: str,
                  *, reference: str | None = None) -> MovementRequest:
        by_id = {ln.line_id: ln for ln in self.lines}
        merged: dict[str, int] = {}  # one movement line per SKU (two order lines may share a SKU)
        for line_id, qty in quantities.items():
            merged[by_id[line_id].sku] = merged.get(by_id[line_id].sku, 0) + qty
        info = workflow.info()
        return MovementRequest(
            key=f"{self.workflow_id}:{step}", kind=kind, reason=reason, workflow_id=info.workflow_id,
            run_id=info.run_id, reference=reference or self.input.business_key,
            lines=[MovementLine(sku=sku, location_id=location, quantity=qty) for sku, qty in sorted(merged.items())],
        )

    def _internal_id(self, step: str) -> str:
        """The identity of an event this order hands over: in the internal namespace no webhook reaches."""
        return internal_event_id(self.workflow_id, step) if self.v2 else f"{self.workflow_id}:{step}"

    async def _forward(self, event: Event, *, summary: str) -> None:
        await call(RoutingActivities.forward_event, event, summary=summary)

    def _stage(self) -> OrderStage:
        if self.stage in (OrderStage.AWAITING_ORDER, OrderStage.RESERVING, OrderStage.REJECTED,
                          OrderStage.NEVER_OPENED):
            return self.stage
        shipped = any(ln.shipped for ln in self.lines)
        if not self._holding():
            return OrderStage.FULFILLED if shipped else OrderStage.CANCELLED
        if any(ln.reserved for ln in self.lines) and not shipped:
            return OrderStage.AWAITING_PICK
        if shipped:
            return OrderStage.PARTIALLY_SHIPPED
        return OrderStage.AWAITING_COLLECTION if self._is_pickup() else OrderStage.AWAITING_DISPATCH

    def _show(self) -> None:
        self.view.stage(str(self.stage))
        self.view.exceptions(self.cases.open_count, self.cases.sla_breached)
        if self.lines:
            headers, rows = rules.details_table(self.lines)
            text = markdown_table(headers, rows)
            if self.shipments:
                text += "\n\nShipments: " + ", ".join(
                    f"{s.shipment_id} ({sum(s.lines.values())} EA from {s.location_id})" for s in self.shipments)
            if self.inbox.pending:
                text += "\n\nHeld: " + ", ".join(str(e.type) for e in self.inbox.pending)
            self.view.details(text)


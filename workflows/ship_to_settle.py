"""Ship-to-settle: from each shipment to recognised, captured and settled money. One process per order.

Opened by the first `order.shipped` (ReserveToFulfill hands over every dispatched or collected shipment);
later shipments join it. For each shipment, exactly once (keys derived from the workflow ID and shipment ID):
revenue is posted (SALE: Dr receivable, Cr revenue, in the legal entity of the shipping location) and the
payment is captured for the shipment's value. COGS is not posted here: the SHIP movement in ReserveToFulfill
posts it. A capture beyond the authorization is refused (OverCapture) and opens an `over_capture` case; the
process goes on.

`shipment.delivered` is recorded per shipment. `payment.settled` is matched against what was captured by the
pure rules in `domain.settlement` (per shipment, or once for all; tolerance from the policy); a settlement for
another payment_id or currency is refused (a `settlement_mismatch` case says why). A matched settlement posts
SETTLEMENT once per shipment it pays for, in that shipment's legal entity (fee and difference within the
tolerance to their accounts). A settlement that matches nothing is held while more shipments may come; once
the order is closed it is a mismatch: it is posted as received and `settlement_mismatch` opens with both figures.

The order is closed by the shipment that ends it (release 3: `order.shipped` with `closed`, one hand-over), or
by a plain `order.closed` (the rest was cancelled after earlier shipments, or a release-2 ReserveToFulfill that
hands the close over on its own). SLA `settlement_overdue` runs from the first dispatch until nothing captured
waits for money. The process completes when the order is closed, every shipment it names has arrived, and
nothing captured waits for a settlement (or the difference is a mismatch case).

Events that come before the first `order.shipped` (a webhook's `payment.settled` or `shipment.delivered`) start
the process, which holds them; if no shipment comes within the policy's `open_timeout`, it ends as `not_opened`
and posts nothing. Release 2's runs are handed to workflows/release_2/ship_to_settle.py for life.
"""
from decimal import Decimal

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.erp import ErpActivities
    from activities.pos import PosActivities
    from adapters.erp import FinancialPosting
    from adapters.pos import CaptureInput
    from domain.errors import ErrorType
    from domain.events import (
        Event,
        EventType,
        OrderClosed,
        OrderShipped,
        PaymentSettled,
        ShipmentDelivered,
        split_closing_shipment,
    )
    from domain.journal import FinancialEvent
    from domain.process import ProcessInput
    from domain.settlement import (
        Allocation,
        Mismatch,
        SettlementRecord,
        SettleOutcome,
        SettleProgress,
        SettleStage,
        SettleState,
        ShipmentRecord,
        ShipmentSettlement,
        all_settled,
        allocate,
        mismatch_at_close,
        refusal,
        settlement_postings,
        shipment_value,
        totals,
    )
    from domain.sla import CaseKind, SlaKind
    from workflows.calls import call_local, refusal_type
    from workflows.common import on_release_3
    from workflows.process import Process, Shown, markdown_table
    from workflows.release_2 import ship_to_settle as release_2

SETTLE_EVENTS = (EventType.ORDER_SHIPPED, EventType.SHIPMENT_DELIVERED, EventType.PAYMENT_SETTLED,
                 EventType.ORDER_CLOSED)


@workflow.defn(name="ShipToSettle")
class ShipToSettle(Process):
    """The ledger postings, the capture and the close run as local activities: each is short and idempotent by
    its key, and they run in the workflow task of the event that causes them, so the revenue and capture of a
    shipment are one action, and so are the postings of the settlement that completes the order and the close."""

    process_type = "ShipToSettle"

    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        self.legacy = None if on_release_3() else release_2.ShipToSettle(input)
        if self.legacy is not None:
            return
        super().__init__(input)
        self.s = SettleProgress.model_validate(input.resume) if input.resume else SettleProgress(channel=input.channel)

    # --- events, query ------------------------------------------------------------------------------------
    @workflow.signal(name="event", description="A business event of this order's settlement: order.shipped, "
                     "shipment.delivered, payment.settled or order.closed. Redeliveries (same event_id) are ignored.")
    def event(self, event: Event) -> None:
        if self.legacy is not None:  # a release-2 run: a release-3 order's closing shipment as its two events
            for part in split_closing_shipment(event):
                self.legacy.event(part)
            return None
        if not self.inbox.offer(event):
            self.s.redeliveries += 1
            self.log.info("settle.redelivery_ignored", event_id=event.event_id, type=str(event.type))

    @workflow.query(name="state", description="Stage, shipments (value, capture, delivery, settlement), "
                    "settlements, totals and exception cases of this order's settlement.")
    def state(self) -> SettleState:
        if self.legacy is not None:
            return self.legacy.state()
        s = self.s
        return SettleState(
            workflow_id=self.workflow_id, business_key=self.input.business_key, channel=s.channel,
            order_id=s.order_id, stage=s.stage, currency=s.currency, payment_id=s.payment_id,
            authorized_amount=s.authorized, order_closed=s.closed is not None,
            closed_outcome=s.closed.outcome if s.closed else None, shipments=s.shipments, settlements=s.settlements,
            totals=totals(s.shipments, s.settlements), mismatch=s.mismatch,
            exception_cases=[ref.model_dump(mode="json") for ref in self.cases.refs()],
        )

    # --- run ----------------------------------------------------------------------------------------------
    @workflow.run
    async def run(self, input: ProcessInput) -> SettleOutcome:
        if self.legacy is not None:
            return await self.legacy.run(input)
        if self.s.opened or await self._opens():
            await self._settle()
        else:
            self.s.stage = SettleStage.NOT_OPENED
            self.log.warning("settle.never_opened", held=self._unapplied())
        outcome = self._outcome()
        # local: in the task of the last event, with its settlement postings (one action)
        await self.close(str(self.s.stage), str(self.s.stage), self.state(), local=True)
        return outcome

    async def _opens(self) -> bool:
        """True once an order.shipped is held. A run started by its order.shipped goes straight on (no timer);
        one started by an early event waits for it up to the policy's open_timeout (that wait's one timer).
        False after the timeout, or when the order closed with nothing shipped."""
        if not self._ready():
            self.refresh()  # ops see it awaiting its shipment
            if not await self.wait_to_open(self._ready, resume=self.s, summary="wait for the first order.shipped"):
                return False
        return self.inbox.has(EventType.ORDER_SHIPPED)

    def _ready(self) -> bool:
        return self.inbox.has(EventType.ORDER_SHIPPED) or any(
            e.type is EventType.ORDER_CLOSED and isinstance(e.data, OrderClosed) and not e.data.shipment_ids
            for e in self.inbox.pending)

    async def _settle(self) -> None:
        """Apply events until the order is complete. One refresh per applied event, after its activities, so
        the task shows what changed in one upsert; a checkpoint after each (continue-as-new when long)."""
        while True:
            # shipments first: a settlement held from before the dispatch then finds what it pays for
            event = self.inbox.take(EventType.ORDER_SHIPPED) or await self.inbox.next(*SETTLE_EVENTS)
            await self._apply(event)
            self.refresh()
            if self._complete():
                break
            await self.checkpoint(self.s)
        while (late := self.inbox.take(EventType.SHIPMENT_DELIVERED)) is not None:  # already here: record them
            assert isinstance(late.data, ShipmentDelivered)
            self._delivered(late, late.data)
        s = self.s
        if s.mismatch is not None or any(x.refused for x in s.settlements):
            s.stage = SettleStage.MISMATCH
        elif any(x.settlement is ShipmentSettlement.NOT_CAPTURED for x in s.shipments):
            s.stage = SettleStage.CAPTURE_REFUSED
        else:
            s.stage = SettleStage.SETTLED
        # the settled figures on the closed run (Temporal UI: Memo)
        workflow.upsert_memo({"settlement": self._memo()})
        if self.inbox.pending:  # e.g. a settlement that came in while the process completed
            self.log.warning("settle.events_not_applied", events=self._unapplied())
        self.log.info("settle.complete", stage=str(s.stage), **{
            k: str(v) for k, v in totals(s.shipments, s.settlements).model_dump().items()})

    def _complete(self) -> bool:
        s = self.s
        if s.closed is None:
            return False
        if not set(s.closed.shipment_ids) <= {x.shipment_id for x in s.shipments}:
            return False  # a shipment the order names is still on its way
        return all_settled(s.shipments, s.settlements)

    async def _apply(self, event: Event) -> None:
        data = event.data
        if isinstance(data, OrderShipped):
            await self._shipped(event, data)
            if data.closed is not None:  # the shipment that ends the order (release 3)
                self._closed(data.closed)
        elif isinstance(data, ShipmentDelivered):
            self._delivered(event, data)
            return
        elif isinstance(data, PaymentSettled):
            if not self._settled(event, data):
                return
        elif isinstance(data, OrderClosed):
            self._closed(data)
        await self._match()

    # --- shipments ----------------------------------------------------------------------------------------
    async def _shipped(self, event: Event, data: OrderShipped) -> None:
        s = self.s
        if any(x.shipment_id == data.shipment_id for x in s.shipments):
            self.log.info("settle.shipment_repeated", shipment_id=data.shipment_id, event_id=event.event_id)
            return
        if not s.shipments:
            s.opened, s.stage = True, SettleStage.AWAITING_SETTLEMENT
            s.order_id, s.channel = data.order_id, data.channel
            s.currency, s.payment_id = data.currency, data.payment.payment_id
            s.authorized = data.payment.authorized_amount
            self.cases.start_clock(SlaKind.SETTLEMENT_OVERDUE)
        shipment = ShipmentRecord(
            shipment_id=data.shipment_id, location_id=data.location_id, currency=data.currency,
            payment_id=data.payment.payment_id, lines=list(data.lines), value=shipment_value(data.lines),
            shipped_at=workflow.now(), delivered_at=s.deliveries.pop(data.shipment_id, None),
        )
        s.shipments.append(shipment)
        self.cases.scope(location_ids=sorted({x.location_id for x in s.shipments}),
                         skus=sorted({line.sku for x in s.shipments for line in x.lines}))
        if shipment.value > 0:
            await self._recognise(shipment, data)
        else:
            shipment.settlement = ShipmentSettlement.SETTLED  # nothing changed hands
        self.log.info("settle.shipment_recognised", shipment_id=shipment.shipment_id, value=str(shipment.value),
                      captured=str(shipment.captured))

    async def _recognise(self, shipment: ShipmentRecord, data: OrderShipped) -> None:
        """Revenue, then the capture: two local activities of one workflow task (one action)."""
        sale = FinancialPosting(
            key=f"{self.workflow_id}:sale:{shipment.shipment_id}", event=FinancialEvent.SALE,
            location_id=shipment.location_id, amount=shipment.value, currency=shipment.currency,
            memo=f"sale: shipment {shipment.shipment_id} of {self.input.business_key}",
            workflow_id=self.workflow_id, run_id=workflow.info().run_id, reference=shipment.shipment_id,
        )
        capture = CaptureInput(
            key=f"{self.workflow_id}:capture:{shipment.shipment_id}", payment_id=data.payment.payment_id,
            authorized_amount=data.payment.authorized_amount, amount=shipment.value, currency=shipment.currency,
            reference=shipment.shipment_id,
        )
        await call_local(ErpActivities.post_financial, sale,
                         summary=f"revenue {shipment.value} {shipment.currency} for {shipment.shipment_id}")
        shipment.revenue_key = sale.key
        try:
            await call_local(PosActivities.capture_payment, capture,
                             summary=f"capture {shipment.value} {shipment.currency} on {capture.payment_id}")
        except ApplicationError as err:  # a local activity fails with the activity's own error
            if refusal_type(err) != ErrorType.OVER_CAPTURE:
                raise
            figures = _details(err)
            shipment.settlement = ShipmentSettlement.NOT_CAPTURED
            shipment.capture_refused = err.message
            self.log.warning("settle.over_capture", shipment_id=shipment.shipment_id, **figures)
            self._open_case(CaseKind.OVER_CAPTURE,
                            summary=f"capture of {shipment.value} {shipment.currency} for shipment "
                                    f"{shipment.shipment_id} exceeds the authorization of {capture.payment_id}",
                            details={"shipment_id": shipment.shipment_id, "payment_id": capture.payment_id,
                                     "requested": str(shipment.value), "currency": shipment.currency,
                                     "authorized": figures.get("authorized", str(capture.authorized_amount)),
                                     "captured_before": figures.get("captured", "")})
            return
        shipment.captured = shipment.value
        shipment.capture_key = capture.key

    def _delivered(self, event: Event, data: ShipmentDelivered) -> None:
        shipment = next((x for x in self.s.shipments if x.shipment_id == data.shipment_id), None)
        if shipment is None:
            self.s.deliveries[data.shipment_id] = event.occurred_at
        elif shipment.delivered_at is None:
            shipment.delivered_at = event.occurred_at
        self.log.info("settle.delivered", shipment_id=data.shipment_id)

    # --- settlements ----------------------------------------------------------------------------------------
    def _settled(self, event: Event, data: PaymentSettled) -> bool:
        """Record a settlement; False when it is refused. One for another payment_id or currency is refused (a
        case says why); any other is real money, however much it resembles an earlier one (redeliveries never
        get here: same event_id)."""
        s = self.s
        record = SettlementRecord(event_id=event.event_id, payment_id=data.payment_id, amount=data.amount,
                                  currency=data.currency, settled_at=event.occurred_at, received_at=workflow.now(),
                                  fee=data.fee or Decimal(0))
        record.refused = refusal(data.payment_id, data.currency, s.payment_id, s.currency)
        s.settlements.append(record)
        if record.refused is None:
            self.log.info("settle.settlement_received", event_id=event.event_id, amount=str(data.amount),
                          fee=str(record.fee))
            return True
        self.log.warning("settle.settlement_refused", event_id=event.event_id, reason=record.refused,
                         amount=str(data.amount), currency=data.currency, payment_id=data.payment_id)
        self._open_case(
            CaseKind.SETTLEMENT_MISMATCH,
            summary=f"settlement {data.amount} {data.currency} does not belong to this order: {record.refused}",
            details={"reason": record.refused, "settled": str(data.amount), "settled_currency": data.currency,
                     "settled_payment_id": data.payment_id, "payment_id": s.payment_id or "",
                     "currency": s.currency or "", "settlement_event_ids": event.event_id},
        )
        return False

    def _closed(self, data: OrderClosed) -> None:
        if self.s.closed is None:
            self.s.closed = data
            self.log.info("settle.order_closed", outcome=data.outcome, shipment_ids=data.shipment_ids)

    async def _match(self) -> None:
        """Allocate held settlements; once the order is closed, post what still matches nothing as a mismatch."""
        s = self.s
        for allocation in allocate(s.shipments, s.settlements, self.policy.settlement_tolerance):
            await self._post_allocation(allocation)
        if s.closed is not None and set(s.closed.shipment_ids) <= {x.shipment_id for x in s.shipments}:
            mismatch = mismatch_at_close(s.shipments, s.settlements)
            if mismatch is not None:
                await self._post_mismatch(mismatch)
        if s.shipments and all_settled(s.shipments, s.settlements):
            self.cases.stop_clock(SlaKind.SETTLEMENT_OVERDUE, by=str(EventType.PAYMENT_SETTLED))

    async def _post_allocation(self, allocation: Allocation) -> None:
        paid = [x for x in self.s.shipments if x.shipment_id in allocation.shipment_ids]
        held = [x for x in self.s.settlements if x.event_id in allocation.settlement_ids]
        amount = sum((x.amount for x in held), Decimal(0))
        await self._post_settlement(amount, paid, held, matched=True)
        for shipment in paid:
            shipment.settlement = ShipmentSettlement.SETTLED
            shipment.settled_by = list(allocation.settlement_ids)
        for settlement in held:
            settlement.allocated_to = list(allocation.shipment_ids)
        self.log.info("settle.matched", settlements=allocation.settlement_ids, shipments=allocation.shipment_ids,
                      amount=str(amount))

    async def _post_mismatch(self, mismatch: Mismatch) -> None:
        s = self.s
        paid = [x for x in s.shipments if x.shipment_id in mismatch.shipment_ids]
        held = [x for x in s.settlements if x.event_id in mismatch.settlement_ids]
        await self._post_settlement(mismatch.settled, paid, held, matched=False)
        for shipment in paid:
            shipment.settlement = ShipmentSettlement.MISMATCH
            shipment.settled_by = list(mismatch.settlement_ids)
        for settlement in held:
            settlement.mismatch = True
            settlement.allocated_to = list(mismatch.shipment_ids)
        currency = s.currency or ""
        if s.mismatch is None:
            s.mismatch = mismatch
        else:  # a further unmatched settlement after the first mismatch: the figures add up
            s.mismatch = Mismatch(
                expected=s.mismatch.expected + mismatch.expected, settled=s.mismatch.settled + mismatch.settled,
                difference=s.mismatch.difference + mismatch.difference,
                shipment_ids=s.mismatch.shipment_ids + mismatch.shipment_ids,
                settlement_ids=s.mismatch.settlement_ids + mismatch.settlement_ids)
        s.stage = SettleStage.MISMATCH
        self.log.warning("settle.mismatch", expected=str(mismatch.expected), settled=str(mismatch.settled),
                         difference=str(mismatch.difference))
        self._open_case(
            CaseKind.SETTLEMENT_MISMATCH,
            summary=f"{mismatch.direction}-settlement: settled {mismatch.settled} {currency}, "
                    f"captured {mismatch.expected} {currency}",
            details={"expected": str(mismatch.expected), "settled": str(mismatch.settled),
                     "difference": str(mismatch.difference), "currency": currency,
                     "payment_id": s.payment_id or "", "shipment_ids": ",".join(mismatch.shipment_ids),
                     "settlement_event_ids": ",".join(mismatch.settlement_ids),
                     "tolerance": str(self.policy.settlement_tolerance)},
        )

    async def _post_settlement(self, amount: Decimal, paid: list[ShipmentRecord],
                               settlements: list[SettlementRecord], *, matched: bool) -> None:
        """Per shipment paid, one SETTLEMENT entry that clears its receivable (domain.settlement.
        settlement_postings): the processor fee to processor_fees, a difference within the tolerance to
        settlement_differences, the rest to cash clearing. Money that pays for no shipment is posted per
        settlement in the entity of the last shipment, its fee with it. Local activities of this task."""
        currency = self.s.currency or settlements[0].currency
        fee = sum((x.fee for x in settlements), Decimal(0))
        postings: list[tuple[str, str, Decimal, Decimal, Decimal, str]] = []  # key, location, receivable, fee, diff, ref
        if paid:
            postings = [(f"{self.workflow_id}:settlement:{p.shipment_id}", p.location_id, p.receivable, p.fee,
                         p.difference, p.shipment_id)
                        for p in settlement_postings(amount, fee, paid, matched=matched)]
        else:
            last = self.s.shipments[-1].location_id
            postings = [(f"{self.workflow_id}:settlement:unmatched:{x.event_id}", last, x.amount, x.fee,
                         Decimal(0), x.event_id) for x in settlements]
        posted = []
        for key, location_id, receivable, share_fee, difference, reference in postings:
            if receivable <= 0 and not difference:
                continue
            await call_local(ErpActivities.post_financial, FinancialPosting(
                key=key, event=FinancialEvent.SETTLEMENT, location_id=location_id, amount=receivable,
                currency=currency, fee=share_fee, difference=difference,
                memo=f"settlement of {self.s.payment_id} for {self.input.business_key}",
                workflow_id=self.workflow_id, run_id=workflow.info().run_id, reference=reference,
            ), summary=f"settlement {receivable + difference} {currency} ({reference})")
            posted.append(key)
        for settlement in settlements:
            settlement.posting_keys = posted

    # --- view -----------------------------------------------------------------------------------------------
    def _open_case(self, kind: CaseKind, *, summary: str, details: dict[str, str]) -> None:
        self.cases.open_case(kind, summary=summary, details=details)
        if str(kind) not in self.s.cases_opened:
            self.s.cases_opened.append(str(kind))

    def shown(self) -> Shown:
        s = self.s
        rows = [(x.shipment_id, x.location_id, f"{x.value} {x.currency}", str(x.captured),
                 "yes" if x.delivered_at else "no", str(x.settlement)) for x in s.shipments]
        t = totals(s.shipments, s.settlements)
        rows.append(("**total**", "", f"{t.shipped} {s.currency or ''}".strip(), str(t.captured), "",
                     f"settled {t.settled}, held {t.held}"))
        details = (f"**{s.stage}** · order closed: {'yes' if s.closed else 'no'}\n\n"
                   + markdown_table(["shipment", "location", "value", "captured", "delivered", "settlement"], rows))
        return Shown(stage=str(s.stage), skus=[line.sku for x in s.shipments for line in x.lines],
                     location_ids=[x.location_id for x in s.shipments], details=details)

    def _memo(self) -> dict[str, str]:
        t = totals(self.s.shipments, self.s.settlements)
        return {"stage": str(self.s.stage), "currency": self.s.currency or "", "shipments": str(len(self.s.shipments)),
                **{k: str(v) for k, v in t.model_dump().items()}}

    def _unapplied(self) -> list[str]:
        return [f"{e.type}:{e.event_id}" for e in self.inbox.pending]

    def _outcome(self) -> SettleOutcome:
        s = self.s
        return SettleOutcome(
            workflow_id=self.workflow_id, stage=s.stage, totals=totals(s.shipments, s.settlements),
            shipments=len(s.shipments),
            settlements=sum(1 for x in s.settlements if x.duplicate_of is None and x.refused is None),
            duplicates=sum(1 for x in s.settlements if x.duplicate_of is not None) + s.redeliveries,
            cases=list(s.cases_opened), unapplied=self._unapplied(),
        )


def _details(err: ApplicationError) -> dict[str, str]:
    """The figures a refusal carried (its details: one dict)."""
    first = err.details[0] if err.details else None
    return {str(k): str(v) for k, v in first.items()} if isinstance(first, dict) else {}

"""Ship-to-settle: from each shipment to recognised, captured and settled money. One process per order.

Opened by the first `order.shipped` (ReserveToFulfill hands over every dispatched or collected shipment);
later shipments join it. For each shipment, exactly once (keys derived from the workflow ID and shipment ID):
revenue is posted (SALE: Dr receivable, Cr revenue, in the legal entity of the shipping location) and the
payment is captured for the shipment's value. COGS is not posted here: the SHIP movement in ReserveToFulfill
posts it. A capture beyond the authorization is refused (OverCapture) and opens an `over_capture` case; the
process goes on.

`shipment.delivered` is recorded per shipment. `payment.settled` is matched against what was captured by the
pure rules in `domain.settlement` (per shipment, or once for all; tolerance from the policy). A matched
settlement posts SETTLEMENT (Dr cash clearing, Cr receivable) once per shipment it pays for, in that
shipment's legal entity. A settlement that matches nothing is held while more shipments may come; once the
order is closed (`order.closed`: no further shipment, cancelled lines never ship so they are not expected),
it is a mismatch: it is posted as received and `settlement_mismatch` opens with both figures.

SLA `settlement_overdue` runs from the first dispatch until nothing captured waits for money.

The process completes when the order is closed, every shipment it names has arrived, and nothing captured
waits for a settlement (or the difference is a mismatch case). Events that come before the first
`order.shipped` (a webhook's `payment.settled` or `shipment.delivered`) start the process, which holds them;
if no shipment comes within the policy's `open_timeout`, it ends as `not_opened` and posts nothing.
"""
from datetime import datetime
from decimal import Decimal

from temporalio import workflow
from temporalio.exceptions import ActivityError

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
    )
    from domain.journal import FinancialEvent
    from domain.process import ProcessInput
    from domain.settlement import (
        Allocation,
        Mismatch,
        SettlementRecord,
        SettleOutcome,
        SettleStage,
        SettleState,
        ShipmentRecord,
        ShipmentSettlement,
        all_settled,
        allocate,
        distribute,
        is_duplicate,
        mismatch_at_close,
        refusal,
        settlement_postings,
        shipment_value,
        totals,
    )
    from domain.sla import CaseKind, SlaKind

from workflows.release_2.calls import call, refusal_type
from workflows.release_2.common import on_release_2
from workflows.release_2.process import Inbox, ProcessLog, ProcessView, enter_closed, markdown_table
from workflows.release_2.sla import ProcessCases

# Runs started before this change have no settlement memo; they replay along the old path (docs/versioning.md).
SETTLEMENT_MEMO_PATCH = "settlement-memo"
SETTLE_EVENTS = (EventType.ORDER_SHIPPED, EventType.SHIPMENT_DELIVERED, EventType.PAYMENT_SETTLED,
                 EventType.ORDER_CLOSED)


# (release 2.0 implementation of ShipToSettle: its @workflow.defn is the entry in workflows/)
class ShipToSettle:
    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        self.v2 = on_release_2()  # first, before any command (workflows/common.py)
        self.input = input
        self.inbox = Inbox(input.pending)
        self.log = ProcessLog(input.business_key)
        self.workflow_id = workflow.info().workflow_id
        self.stage = SettleStage.AWAITING_SHIPMENT
        self.opened = False
        self.order_id: str | None = None
        self.channel: str | None = input.channel
        self.currency: str | None = None
        self.payment_id: str | None = None
        self.authorized: Decimal | None = None
        self.shipments: list[ShipmentRecord] = []
        self.settlements: list[SettlementRecord] = []
        self.deliveries: dict[str, datetime] = {}  # shipment.delivered for a shipment not seen yet
        self.closed: OrderClosed | None = None
        self.mismatch: Mismatch | None = None
        self.redeliveries = 0
        self.cases_opened: list[str] = []
        self.view: ProcessView | None = None
        self.cases: ProcessCases | None = None

    # --- events, query ------------------------------------------------------------------------------------
    @workflow.signal(name="event", description="A business event of this order's settlement: order.shipped, "
                     "shipment.delivered, payment.settled or order.closed. Redeliveries (same event_id) are ignored.")
    def event(self, event: Event) -> None:
        if not self.inbox.offer(event):
            self.redeliveries += 1
            self.log.info("settle.redelivery_ignored", event_id=event.event_id, type=str(event.type))

    @workflow.query(name="state", description="Stage, shipments (value, capture, delivery, settlement), "
                    "settlements, totals and exception cases of this order's settlement.")
    def state(self) -> SettleState:
        return SettleState(
            workflow_id=self.workflow_id,
            business_key=self.input.business_key,
            channel=self.channel,
            order_id=self.order_id,
            stage=self.stage,
            currency=self.currency,
            payment_id=self.payment_id,
            authorized_amount=self.authorized,
            order_closed=self.closed is not None,
            closed_outcome=self.closed.outcome if self.closed else None,
            shipments=self.shipments,
            settlements=self.settlements,
            totals=totals(self.shipments, self.settlements),
            mismatch=self.mismatch,
            exception_cases=[ref.model_dump(mode="json") for ref in self.cases.refs()] if self.cases else [],
        )

    # --- run ----------------------------------------------------------------------------------------------
    @workflow.run
    async def run(self, input: ProcessInput) -> SettleOutcome:
        self._setup(input)
        if await self._wait_for_first_shipment():
            await self._settle()
        else:
            self.stage = SettleStage.NOT_OPENED
            self.log.warning("settle.never_opened", held=self._unapplied())
            self._refresh()
        assert self.cases is not None
        await self.cases.drain()
        if self.inbox.pending and self.opened:  # e.g. a settlement that came in while the process completed
            self.log.warning("settle.events_not_applied", events=self._unapplied())
        outcome = self._outcome()
        if self.v2:
            await enter_closed("ShipToSettle", self.input.business_key, self.input.channel, str(self.stage),
                               str(self.stage), self.state(), self.inbox)
        return outcome

    def _unapplied(self) -> list[str]:
        return [f"{e.type}:{e.event_id}" for e in self.inbox.pending]

    def _setup(self, input: ProcessInput) -> None:
        self.view = ProcessView(input.business_key, input.channel)
        self.cases = ProcessCases(process_type="ShipToSettle", business_key=input.business_key,
                                  channel=input.channel, policy=input.policy.sla, view=self.view,
                                  inbox=self.inbox, log=self.log)
        self._refresh()

    async def _wait_for_first_shipment(self) -> bool:
        """True once an order.shipped is held; False after open_timeout, or when the order closed unshipped."""
        def ready() -> bool:
            return self.inbox.has(EventType.ORDER_SHIPPED) or self._closed_unshipped()

        try:
            await workflow.wait_condition(ready, timeout=self.input.policy.open_timeout,
                                          timeout_summary="wait for the first order.shipped")
        except TimeoutError:
            return False
        return self.inbox.has(EventType.ORDER_SHIPPED)

    def _closed_unshipped(self) -> bool:
        return any(e.type is EventType.ORDER_CLOSED and isinstance(e.data, OrderClosed) and not e.data.shipment_ids
                   for e in self.inbox.pending)

    async def _settle(self) -> None:
        self.opened = True
        while not self._complete():
            # shipments first: a settlement held from before the dispatch then finds what it pays for
            event = self.inbox.take(EventType.ORDER_SHIPPED)
            if event is None:
                event = await self.inbox.next(*SETTLE_EVENTS)
            await self._apply(event)
            self._refresh()
        while (late := self.inbox.take(EventType.SHIPMENT_DELIVERED)) is not None:  # already here: record them
            assert isinstance(late.data, ShipmentDelivered)
            self._delivered(late, late.data)
        if self.mismatch is not None or any(s.refused for s in self.settlements):
            self.stage = SettleStage.MISMATCH
        elif any(s.settlement is ShipmentSettlement.NOT_CAPTURED for s in self.shipments):
            self.stage = SettleStage.CAPTURE_REFUSED
        else:
            self.stage = SettleStage.SETTLED
        self._refresh()
        if workflow.patched(SETTLEMENT_MEMO_PATCH):
            # the settled figures on the closed run (Temporal UI: Memo); a command, hence patched (docs/versioning.md)
            workflow.upsert_memo({"settlement": self._memo()})
        self.log.info("settle.complete", stage=str(self.stage), **{
            k: str(v) for k, v in totals(self.shipments, self.settlements).model_dump().items()})

    def _complete(self) -> bool:
        if self.closed is None:
            return False
        known = {s.shipment_id for s in self.shipments}
        if not set(self.closed.shipment_ids) <= known:
            return False  # a shipment the order names is still on its way
        return all_settled(self.shipments, self.settlements)

    async def _apply(self, event: Event) -> None:
        data = event.data
        if isinstance(data, OrderShipped):
            await self._shipped(event, data)
        elif isinstance(data, ShipmentDelivered):
            self._delivered(event, data)
        elif isinstance(data, PaymentSettled):
            await self._settled(event, data)
        elif isinstance(data, OrderClosed):
            await self._closed(data)

    # --- shipments ----------------------------------------------------------------------------------------
    async def _shipped(self, event: Event, data: OrderShipped) -> None:
        assert self.cases is not None
        if any(s.shipment_id == data.shipment_id for s in self.shipments):
            self.log.info("settle.shipment_repeated", shipment_id=data.shipment_id, event_id=event.event_id)
            return
        if not self.shipments:
            self.order_id, self.channel = data.order_id, data.channel
            self.currency, self.payment_id = data.currency, data.payment.payment_id
            self.authorized = data.payment.authorized_amount
            self.cases.start_clock(SlaKind.SETTLEMENT_OVERDUE)
        now = workflow.now()
        shipment = ShipmentRecord(
            shipment_id=data.shipment_id, location_id=data.location_id, currency=data.currency,
            payment_id=data.payment.payment_id, lines=list(data.lines), value=shipment_value(data.lines),
            shipped_at=now, delivered_at=self.deliveries.pop(data.shipment_id, None),
        )
        self.shipments.append(shipment)
        self.cases.scope(location_ids=sorted({s.location_id for s in self.shipments}),
                         skus=sorted({line.sku for s in self.shipments for line in s.lines}))
        self._refresh()
        info = workflow.info()
        if shipment.value > 0:
            sale = FinancialPosting(
                key=f"{self.workflow_id}:sale:{shipment.shipment_id}", event=FinancialEvent.SALE,
                location_id=shipment.location_id, amount=shipment.value, currency=shipment.currency,
                memo=f"sale: shipment {shipment.shipment_id} of {self.input.business_key}",
                workflow_id=self.workflow_id, run_id=info.run_id, reference=shipment.shipment_id,
            )
            await call(ErpActivities.post_financial, sale,
                       summary=f"revenue {shipment.value} {shipment.currency} for {shipment.shipment_id}")
            shipment.revenue_key = sale.key
            await self._capture(shipment, data)
        else:
            shipment.settlement = ShipmentSettlement.SETTLED  # nothing changed hands
        self.log.info("settle.shipment_recognised", shipment_id=shipment.shipment_id, value=str(shipment.value),
                      captured=str(shipment.captured))
        await self._match()

    async def _capture(self, shipment: ShipmentRecord, data: OrderShipped) -> None:
        assert self.cases is not None
        capture = CaptureInput(
            key=f"{self.workflow_id}:capture:{shipment.shipment_id}", payment_id=data.payment.payment_id,
            authorized_amount=data.payment.authorized_amount, amount=shipment.value, currency=shipment.currency,
            reference=shipment.shipment_id,
        )
        try:
            await call(PosActivities.capture_payment, capture,
                       summary=f"capture {shipment.value} {shipment.currency} on {capture.payment_id}")
        except ActivityError as err:
            if refusal_type(err) != ErrorType.OVER_CAPTURE:
                raise
            figures = _details(err)
            shipment.settlement = ShipmentSettlement.NOT_CAPTURED
            shipment.capture_refused = str(err.cause.message if err.cause else err)  # type: ignore[union-attr]
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
        shipment = next((s for s in self.shipments if s.shipment_id == data.shipment_id), None)
        if shipment is None:
            self.deliveries[data.shipment_id] = event.occurred_at
        elif shipment.delivered_at is None:
            shipment.delivered_at = event.occurred_at
        self.log.info("settle.delivered", shipment_id=data.shipment_id)

    # --- settlements ----------------------------------------------------------------------------------------
    async def _settled(self, event: Event, data: PaymentSettled) -> None:
        if self.v2:
            await self._settled_v2(event, data)
            return
        record = SettlementRecord(event_id=event.event_id, payment_id=data.payment_id, amount=data.amount,
                                  currency=data.currency, settled_at=event.occurred_at, received_at=workflow.now())
        first = is_duplicate(record, self.settlements)
        if first is not None:
            record.duplicate_of = first
            self.settlements.append(record)
            self.log.warning("settle.duplicate_settlement", event_id=event.event_id, duplicate_of=first,
                             amount=str(data.amount))
            return
        self.settlements.append(record)
        self.log.info("settle.settlement_received", event_id=event.event_id, amount=str(data.amount))
        await self._match()

    async def _settled_v2(self, event: Event, data: PaymentSettled) -> None:
        """Release 2: a settlement for another payment_id or currency is refused (a case says why); any other is
        real money, however much it resembles an earlier one (redeliveries never get here: same event_id)."""
        record = SettlementRecord(event_id=event.event_id, payment_id=data.payment_id, amount=data.amount,
                                  currency=data.currency, settled_at=event.occurred_at, received_at=workflow.now(),
                                  fee=data.fee or Decimal(0))
        record.refused = refusal(data.payment_id, data.currency, self.payment_id, self.currency)
        self.settlements.append(record)
        if record.refused is not None:
            self.log.warning("settle.settlement_refused", event_id=event.event_id, reason=record.refused,
                             amount=str(data.amount), currency=data.currency, payment_id=data.payment_id)
            self._open_case(
                CaseKind.SETTLEMENT_MISMATCH,
                summary=f"settlement {data.amount} {data.currency} does not belong to this order: {record.refused}",
                details={"reason": record.refused, "settled": str(data.amount), "settled_currency": data.currency,
                         "settled_payment_id": data.payment_id, "payment_id": self.payment_id or "",
                         "currency": self.currency or "", "settlement_event_ids": event.event_id},
            )
            return
        self.log.info("settle.settlement_received", event_id=event.event_id, amount=str(data.amount),
                      fee=str(record.fee))
        await self._match()

    async def _closed(self, data: OrderClosed) -> None:
        if self.closed is None:
            self.closed = data
            self.log.info("settle.order_closed", outcome=data.outcome, shipment_ids=data.shipment_ids)
        await self._match()

    async def _match(self) -> None:
        """Allocate held settlements; once the order is closed, post what still matches nothing as a mismatch."""
        tolerance = self.input.policy.settlement_tolerance
        for allocation in allocate(self.shipments, self.settlements, tolerance):
            await self._post_allocation(allocation)
        if self._no_more_shipments():
            mismatch = mismatch_at_close(self.shipments, self.settlements)
            if mismatch is not None:
                await self._post_mismatch(mismatch)
        self._stop_clock_if_settled()

    def _no_more_shipments(self) -> bool:
        if self.closed is None:
            return False
        return set(self.closed.shipment_ids) <= {s.shipment_id for s in self.shipments}

    async def _post_allocation(self, allocation: Allocation) -> None:
        paid = [s for s in self.shipments if s.shipment_id in allocation.shipment_ids]
        held = [s for s in self.settlements if s.event_id in allocation.settlement_ids]
        amount = sum((s.amount for s in held), Decimal(0))
        await self._post_settlement(amount, paid, held, matched=True)
        for shipment in paid:
            shipment.settlement = ShipmentSettlement.SETTLED
            shipment.settled_by = list(allocation.settlement_ids)
        for settlement in held:
            settlement.allocated_to = list(allocation.shipment_ids)
        self.log.info("settle.matched", settlements=allocation.settlement_ids, shipments=allocation.shipment_ids,
                      amount=str(amount))

    async def _post_mismatch(self, mismatch: Mismatch) -> None:
        paid = [s for s in self.shipments if s.shipment_id in mismatch.shipment_ids]
        held = [s for s in self.settlements if s.event_id in mismatch.settlement_ids]
        await self._post_settlement(mismatch.settled, paid, held, matched=False)
        for shipment in paid:
            shipment.settlement = ShipmentSettlement.MISMATCH
            shipment.settled_by = list(mismatch.settlement_ids)
        for settlement in held:
            settlement.mismatch = True
            settlement.allocated_to = list(mismatch.shipment_ids)
        currency = self.currency or ""
        if self.mismatch is None:
            self.mismatch = mismatch
        else:  # a further unmatched settlement after the first mismatch: the figures add up
            self.mismatch = Mismatch(
                expected=self.mismatch.expected + mismatch.expected, settled=self.mismatch.settled + mismatch.settled,
                difference=self.mismatch.difference + mismatch.difference,
                shipment_ids=self.mismatch.shipment_ids + mismatch.shipment_ids,
                settlement_ids=self.mismatch.settlement_ids + mismatch.settlement_ids)
        self.log.warning("settle.mismatch", expected=str(mismatch.expected), settled=str(mismatch.settled),
                         difference=str(mismatch.difference))
        self._open_case(
            CaseKind.SETTLEMENT_MISMATCH,
            summary=f"{mismatch.direction}-settlement: settled {mismatch.settled} {currency}, "
                    f"captured {mismatch.expected} {currency}",
            details={"expected": str(mismatch.expected), "settled": str(mismatch.settled),
                     "difference": str(mismatch.difference), "currency": currency,
                     "payment_id": self.payment_id or "", "shipment_ids": ",".join(mismatch.shipment_ids),
                     "settlement_event_ids": ",".join(mismatch.settlement_ids),
                     "tolerance": str(self.input.policy.settlement_tolerance)},
        )

    async def _post_settlement(self, amount: Decimal, paid: list[ShipmentRecord],
                               settlements: list[SettlementRecord], *, matched: bool) -> None:
        """SETTLEMENT (Dr cash clearing, Cr receivable) once per shipment paid, in its legal entity; money that
        pays for no shipment (an over-settlement after everything was settled) is posted once per settlement
        in the entity of the last shipment."""
        if self.v2:
            await self._post_settlement_v2(amount, paid, settlements, matched=matched)
            return
        info = workflow.info()
        currency = self.currency or settlements[0].currency
        if paid:
            postings = [(f"{self.workflow_id}:settlement:{s.shipment_id}", s.location_id, share, s.shipment_id)
                        for s, share in distribute(amount, paid)]
        else:
            last = self.shipments[-1].location_id
            postings = [(f"{self.workflow_id}:settlement:unmatched:{s.event_id}", last, s.amount, s.event_id)
                        for s in settlements]
        for key, location_id, share, reference in postings:
            if share <= 0:
                continue
            await call(ErpActivities.post_financial, FinancialPosting(
                key=key, event=FinancialEvent.SETTLEMENT, location_id=location_id, amount=share, currency=currency,
                memo=f"settlement of {self.payment_id} for {self.input.business_key}", workflow_id=self.workflow_id,
                run_id=info.run_id, reference=reference,
            ), summary=f"settlement {share} {currency} ({reference})")
        for settlement in settlements:
            settlement.posting_keys = [key for key, _, share, _ in postings if share > 0]

    async def _post_settlement_v2(self, amount: Decimal, paid: list[ShipmentRecord],
                                  settlements: list[SettlementRecord], *, matched: bool) -> None:
        """Release 2: per shipment paid, one SETTLEMENT entry that clears its receivable (domain.settlement.
        settlement_postings): the processor fee to processor_fees, a difference within the tolerance to
        settlement_differences, the rest to cash clearing. Money that pays for no shipment is posted per
        settlement in the entity of the last shipment, its fee with it."""
        info = workflow.info()
        currency = self.currency or settlements[0].currency
        fee = sum((s.fee for s in settlements), Decimal(0))
        postings: list[tuple[str, str, Decimal, Decimal, Decimal, str]] = []  # key, location, receivable, fee, diff, ref
        if paid:
            postings = [(f"{self.workflow_id}:settlement:{p.shipment_id}", p.location_id, p.receivable, p.fee,
                         p.difference, p.shipment_id)
                        for p in settlement_postings(amount, fee, paid, matched=matched)]
        else:
            last = self.shipments[-1].location_id
            postings = [(f"{self.workflow_id}:settlement:unmatched:{s.event_id}", last, s.amount, s.fee,
                         Decimal(0), s.event_id) for s in settlements]
        posted = []
        for key, location_id, receivable, share_fee, difference, reference in postings:
            if receivable <= 0 and not difference:
                continue
            await call(ErpActivities.post_financial, FinancialPosting(
                key=key, event=FinancialEvent.SETTLEMENT, location_id=location_id, amount=receivable,
                currency=currency, fee=share_fee, difference=difference,
                memo=f"settlement of {self.payment_id} for {self.input.business_key}", workflow_id=self.workflow_id,
                run_id=info.run_id, reference=reference,
            ), summary=f"settlement {receivable + difference} {currency} ({reference})")
            posted.append(key)
        for settlement in settlements:
            settlement.posting_keys = posted

    def _stop_clock_if_settled(self) -> None:
        assert self.cases is not None
        if self.shipments and all_settled(self.shipments, self.settlements):
            self.cases.stop_clock(SlaKind.SETTLEMENT_OVERDUE, by=str(EventType.PAYMENT_SETTLED))

    # --- view -----------------------------------------------------------------------------------------------
    def _open_case(self, kind: CaseKind, *, summary: str, details: dict[str, str]) -> None:
        assert self.cases is not None
        self.cases.open_case(kind, summary=summary, details=details)
        if str(kind) not in self.cases_opened:
            self.cases_opened.append(str(kind))

    def _refresh(self) -> None:
        if self.view is None:
            return
        if self.opened and self.stage in (SettleStage.AWAITING_SHIPMENT, SettleStage.AWAITING_SETTLEMENT):
            self.stage = SettleStage.MISMATCH if self.mismatch else SettleStage.AWAITING_SETTLEMENT
        self.view.stage(str(self.stage))
        if self.cases is not None:
            self.view.exceptions(self.cases.open_count, self.cases.sla_breached)
        self.view.skus([line.sku for s in self.shipments for line in s.lines])
        self.view.locations([s.location_id for s in self.shipments])
        rows = [(s.shipment_id, s.location_id, f"{s.value} {s.currency}", str(s.captured),
                 "yes" if s.delivered_at else "no", str(s.settlement)) for s in self.shipments]
        t = totals(self.shipments, self.settlements)
        rows.append(("**total**", "", f"{t.shipped} {self.currency or ''}".strip(), str(t.captured), "",
                     f"settled {t.settled}, held {t.held}"))
        self.view.details(f"**{self.stage}** · order closed: {'yes' if self.closed else 'no'}\n\n"
                          + markdown_table(["shipment", "location", "value", "captured", "delivered", "settlement"],
                                           rows))

    def _memo(self) -> dict[str, str]:
        t = totals(self.shipments, self.settlements)
        return {"stage": str(self.stage), "currency": self.currency or "", "shipments": str(len(self.shipments)),
                **{k: str(v) for k, v in t.model_dump().items()}}

    def _outcome(self) -> SettleOutcome:
        return SettleOutcome(
            workflow_id=self.workflow_id, stage=self.stage, totals=totals(self.shipments, self.settlements),
            shipments=len(self.shipments),
            settlements=sum(1 for s in self.settlements if s.duplicate_of is None and s.refused is None),
            duplicates=sum(1 for s in self.settlements if s.duplicate_of is not None) + self.redeliveries,
            cases=list(self.cases_opened), unapplied=self._unapplied(),
        )


def _details(err: ActivityError) -> dict[str, str]:
    """The figures a refusal carried (ApplicationError details: one dict)."""
    details = getattr(err.cause, "details", None) or ()
    first = details[0] if details else None
    return {str(k): str(v) for k, v in first.items()} if isinstance(first, dict) else {}

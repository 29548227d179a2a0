"""Ship-to-settle: the state of one order's money after dispatch, and the pure rules that match settlements.

One `ShipToSettle` process per order. Each shipment (handed over by ReserveToFulfill as `order.shipped`) is
recognised once (revenue: Dr receivable, Cr revenue) and captured once against the authorization. Settlements
(`payment.settled`) are matched against what was captured:

- A settlement is *allocated* to unsettled captured shipments when its amount equals (within the tolerance)
  the captured value of all of them, or of one subset of them (a per-shipment settlement). Several held
  settlements that together equal all unsettled captures are allocated together (split settlement).
- A settlement that matches nothing yet is *held* while more shipments may come (the order is not closed):
  the next shipment may make it match (a settlement that arrives before its dispatch).
- Once the order is closed (no further shipment), a held settlement that still matches nothing is a
  *mismatch*: expected = captured value of the unsettled shipments, settled = the held amounts. Those
  shipments are then closed as settled with a mismatch, and a `settlement_mismatch` case carries both figures.

Release 2 (`v2` rules below; release 1.0 runs keep the 1.0 rules to their end):
- a settlement names its payment and currency: one for another payment_id or currency never matches; it is
  recorded as refused (a `settlement_mismatch` case with the reason), posted nowhere and waited for by nothing;
- two settlements are two settlements: the only duplicate is the same delivery (event_id, dropped by the Inbox),
  so the amount fingerprint below is not used;
- a settlement is posted so each shipment's receivable is cleared exactly by what it captured: the gross, the
  processor fee and the difference within the tolerance are each split over the shipments with
  `domain.money.allocate` (weights: captured), the fee posted to processor_fees and the difference to
  settlement_differences (`settlement_postings`).

Duplicates (release 1.0): a redelivery with the same `webhook-id` (event_id) never reaches these rules (the Inbox
drops it). A second delivery with a new id but the same settlement (same payment, amount, currency and settlement
timestamp) is recorded as a duplicate and neither posted nor matched: a processor settling two shipments of
equal value does so at two different times. A settlement that differs in any of those is real money: it is
posted, and if nothing captured is left to cover it, it ends as an over-settlement mismatch.

Pure: no I/O, used from workflow code and tests alike.
"""
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from itertools import combinations
from typing import Any

from pydantic import BaseModel, Field

from domain.events import OrderClosed, PricedLine
from domain.money import Amount, round_money
from domain.money import allocate as allocate_money

MAX_SUBSET_SEARCH = 10  # unsettled shipments searched by subset; beyond it only "all" and single shipments


class SettleStage(StrEnum):
    AWAITING_SHIPMENT = "awaiting_shipment"  # started by an early event, the first order.shipped not yet here
    AWAITING_SETTLEMENT = "awaiting_settlement"  # something captured is not settled yet, or the order is open
    SETTLED = "settled"  # order closed, everything captured settled within tolerance
    MISMATCH = "mismatch"  # order closed, a settlement did not match what was captured (case open)
    CAPTURE_REFUSED = "capture_refused"  # order closed, all captured money settled, a capture was refused (case)
    NOT_OPENED = "not_opened"  # no order.shipped within the open timeout (or the order closed unshipped)


class ShipmentSettlement(StrEnum):
    OPEN = "open"  # captured, waiting for its settlement
    SETTLED = "settled"
    MISMATCH = "mismatch"
    NOT_CAPTURED = "not_captured"  # the capture was refused (over-capture): nothing to settle, case open


class ShipmentRecord(BaseModel):
    shipment_id: str
    location_id: str
    currency: str
    payment_id: str
    lines: list[PricedLine]
    value: Amount  # what the shipment is worth: revenue recognised
    shipped_at: datetime
    revenue_key: str | None = None
    captured: Amount = Decimal(0)
    capture_key: str | None = None
    capture_refused: str | None = None  # the refusal message
    delivered_at: datetime | None = None
    settlement: ShipmentSettlement = ShipmentSettlement.OPEN
    settled_by: list[str] = Field(default_factory=list)  # settlement event IDs allocated to it


class SettlementRecord(BaseModel):
    event_id: str
    payment_id: str
    amount: Amount
    currency: str
    settled_at: datetime  # the event's timestamp
    received_at: datetime
    posting_keys: list[str] = Field(default_factory=list)  # SETTLEMENT journal entries it was posted as
    allocated_to: list[str] = Field(default_factory=list)  # shipment IDs; empty while held
    duplicate_of: str | None = None  # event_id of the first delivery of the same settlement
    mismatch: bool = False
    fee: Amount = Decimal(0)  # the processor's fee out of `amount` (the gross)
    refused: str | None = None  # why it can never match this order (another payment_id or currency)

    @property
    def held(self) -> bool:
        return not self.allocated_to and self.duplicate_of is None and not self.mismatch and self.refused is None

    def fingerprint(self) -> tuple[str, Decimal, str, datetime]:
        return (self.payment_id, self.amount, self.currency, self.settled_at)


class Totals(BaseModel):
    shipped: Amount  # revenue recognised: the value of everything shipped
    captured: Amount
    settled: Amount  # posted settlements (duplicates excluded)
    outstanding: Amount  # captured and not yet settled or closed as mismatch
    held: Amount  # settlements not matched yet


class Mismatch(BaseModel):
    expected: Amount  # captured and unsettled
    settled: Amount  # held settlements
    difference: Amount  # settled - expected
    shipment_ids: list[str]
    settlement_ids: list[str]

    @property
    def direction(self) -> str:
        return "over" if self.difference > 0 else "under"


class SettleState(BaseModel):
    """What the `state` query answers (the read API serves it as JSON)."""

    workflow_id: str
    business_key: str
    channel: str | None = None
    order_id: str | None = None
    stage: SettleStage
    currency: str | None = None
    payment_id: str | None = None
    authorized_amount: Amount | None = None
    order_closed: bool = False
    closed_outcome: str | None = None
    shipments: list[ShipmentRecord] = Field(default_factory=list)
    settlements: list[SettlementRecord] = Field(default_factory=list)
    totals: Totals
    mismatch: Mismatch | None = None  # the settlement_mismatch figures, once raised
    exception_cases: list[dict[str, Any]] = Field(default_factory=list)  # ProcessCases.refs(), as JSON


class SettleProgress(BaseModel):
    """What a ShipToSettle run knows of its order's money (release 3): the process's own state, carried across
    continue-as-new whole (`ProcessInput.resume`); the `state` query answers from it."""

    stage: SettleStage = SettleStage.AWAITING_SHIPMENT
    opened: bool = False  # the first order.shipped was applied
    order_id: str | None = None
    channel: str | None = None
    currency: str | None = None
    payment_id: str | None = None
    authorized: Amount | None = None
    shipments: list[ShipmentRecord] = Field(default_factory=list)
    settlements: list[SettlementRecord] = Field(default_factory=list)
    deliveries: dict[str, datetime] = Field(default_factory=dict)  # shipment.delivered for a shipment not seen yet
    closed: OrderClosed | None = None  # no further shipment will come
    mismatch: Mismatch | None = None
    redeliveries: int = 0  # events dropped by the Inbox as seen before
    cases_opened: list[str] = Field(default_factory=list)  # case kinds, in the order they opened


class SettleOutcome(BaseModel):
    workflow_id: str
    stage: SettleStage
    totals: Totals
    shipments: int
    settlements: int
    duplicates: int
    cases: list[str] = Field(default_factory=list)  # case kinds opened
    unapplied: list[str] = Field(default_factory=list)  # "type:event_id" held but never applied (logged)


# --- pure rules -------------------------------------------------------------------------------------------------
def shipment_value(lines: Sequence[PricedLine]) -> Decimal:
    """Revenue of one shipment: the lines' charged amounts when the order process sent them (release 2: each
    line's share of its line total, so a line's shipments add up to it to the cent), else quantities (EA) times
    their unit prices, rounded to the cent."""
    if lines and all(line.amount is not None for line in lines):
        return sum((Decimal(line.amount) for line in lines if line.amount is not None), Decimal(0))
    return round_money(sum((Decimal(line.quantity) * line.unit_price for line in lines), Decimal(0)))


def within(a: Decimal, b: Decimal, tolerance: Decimal) -> bool:
    return abs(a - b) <= tolerance


def match_subset(amount: Decimal, open_shipments: Sequence[ShipmentRecord], tolerance: Decimal) -> list[str] | None:
    """The shipments one settlement of `amount` pays for, or None.

    All open shipments first (a settlement once for all), then the smallest subset in shipment order (a
    settlement per shipment); an exact match is preferred over one within the tolerance.
    """
    if not open_shipments:
        return None
    ids = [s.shipment_id for s in open_shipments]
    captured = {s.shipment_id: s.captured for s in open_shipments}
    total = sum(captured.values(), Decimal(0))
    if total == amount:
        return ids
    if len(ids) <= MAX_SUBSET_SEARCH:
        candidates = [list(c) for size in range(1, len(ids)) for c in combinations(ids, size)]
    else:
        candidates = [[i] for i in ids]
    for exact in (True, False):
        if not exact and within(total, amount, tolerance):
            return ids
        for subset in candidates:
            value = sum((captured[i] for i in subset), Decimal(0))
            if (value == amount) if exact else within(value, amount, tolerance):
                return subset
    return None


def is_duplicate(candidate: SettlementRecord, earlier: Sequence[SettlementRecord]) -> str | None:
    """The event_id of an earlier delivery of the same settlement (new webhook-id, same content), else None."""
    for first in earlier:
        if first.duplicate_of is None and first.fingerprint() == candidate.fingerprint():
            return first.event_id
    return None


class Allocation(BaseModel):
    settlement_ids: list[str]
    shipment_ids: list[str]


def allocate(shipments: Sequence[ShipmentRecord], settlements: Sequence[SettlementRecord],
             tolerance: Decimal) -> list[Allocation]:
    """Match held settlements to open shipments (pure: the caller applies the result).

    Each held settlement, oldest first, against a subset of the still-open shipments; then whatever is still
    held, taken together, against all still-open shipments.
    """
    open_ids = [s.shipment_id for s in shipments if s.settlement is ShipmentSettlement.OPEN]
    by_id = {s.shipment_id: s for s in shipments}
    held = [s for s in settlements if s.held]
    out: list[Allocation] = []
    for settlement in held:
        subset = match_subset(settlement.amount, [by_id[i] for i in open_ids], tolerance)
        if subset is not None:
            out.append(Allocation(settlement_ids=[settlement.event_id], shipment_ids=subset))
            open_ids = [i for i in open_ids if i not in subset]
    taken = {sid for a in out for sid in a.settlement_ids}
    rest = [s for s in held if s.event_id not in taken]
    if len(rest) > 1 and open_ids:
        rest_total = sum((s.amount for s in rest), Decimal(0))
        open_total = sum((by_id[i].captured for i in open_ids), Decimal(0))
        if within(rest_total, open_total, tolerance):
            out.append(Allocation(settlement_ids=[s.event_id for s in rest], shipment_ids=open_ids))
    return out


def mismatch_at_close(shipments: Sequence[ShipmentRecord], settlements: Sequence[SettlementRecord]) -> Mismatch | None:
    """With no further shipment to come: held settlements that matched nothing are a mismatch against the
    still-open shipments (possibly none: an over-settlement). None while nothing is held (still waiting)."""
    held = [s for s in settlements if s.held]
    if not held:
        return None
    open_shipments = [s for s in shipments if s.settlement is ShipmentSettlement.OPEN]
    expected = sum((s.captured for s in open_shipments), Decimal(0))
    settled = sum((s.amount for s in held), Decimal(0))
    return Mismatch(expected=expected, settled=settled, difference=settled - expected,
                    shipment_ids=[s.shipment_id for s in open_shipments],
                    settlement_ids=[s.event_id for s in held])


def totals(shipments: Sequence[ShipmentRecord], settlements: Sequence[SettlementRecord]) -> Totals:
    zero = Decimal(0)
    return Totals(
        shipped=sum((s.value for s in shipments), zero),
        captured=sum((s.captured for s in shipments), zero),
        settled=sum((s.amount for s in settlements if s.duplicate_of is None and s.refused is None), zero),
        outstanding=sum((s.captured for s in shipments if s.settlement is ShipmentSettlement.OPEN), zero),
        held=sum((s.amount for s in settlements if s.held), zero),
    )


def all_settled(shipments: Sequence[ShipmentRecord], settlements: Sequence[SettlementRecord]) -> bool:
    """Nothing captured is waiting for money, and no money is waiting for a match."""
    return (all(s.settlement is not ShipmentSettlement.OPEN for s in shipments)
            and not any(s.held for s in settlements))


def distribute(amount: Decimal, shipments: Sequence[ShipmentRecord]) -> list[tuple[ShipmentRecord, Decimal]]:
    """How a settled `amount` is posted over the shipments it pays for, so each legal entity's receivable is
    cleared by its own shipments: each shipment up to what it captured, in order; the last one takes whatever
    is left (the difference within the tolerance, or an over-settlement). Empty when there are no shipments."""
    out: list[tuple[ShipmentRecord, Decimal]] = []
    remaining = amount
    for n, shipment in enumerate(shipments):
        share = remaining if n == len(shipments) - 1 else min(remaining, shipment.captured)
        out.append((shipment, share))
        remaining -= share
    return out


# --- release 2 ---------------------------------------------------------------------------------------------------
def refusal(payment_id: str, currency: str, expected_payment_id: str | None, expected_currency: str | None) -> str | None:
    """Why a settlement can never pay for this order (another payment, another currency), else None."""
    if expected_payment_id is not None and payment_id != expected_payment_id:
        return f"the settlement is for payment {payment_id}, this order was paid with {expected_payment_id}"
    if expected_currency is not None and currency != expected_currency:
        return f"the settlement is in {currency}, this order is in {expected_currency}"
    return None


class SettlementPosting(BaseModel):
    """One shipment's part of a settlement: the receivable it clears, the fee and the difference it carries."""

    shipment_id: str
    location_id: str
    receivable: Amount  # credited to the receivable
    fee: Amount = Decimal(0)  # debited to processor_fees
    difference: Amount = Decimal(0)  # gross share - receivable: credited (over) or debited (under) to differences

    @property
    def gross(self) -> Decimal:
        return self.receivable + self.difference


def settlement_postings(gross: Decimal, fee: Decimal, shipments: Sequence[ShipmentRecord], *,
                        matched: bool) -> list[SettlementPosting]:
    """How a settlement of `gross` (of which the processor kept `fee`) is posted over the shipments it pays for.

    Matched (equal to what they captured, or within the tolerance): the gross and the fee are split over the
    shipments in proportion to what each captured (`allocate`: the parts add up to the cent); each shipment's
    receivable is cleared by exactly what it captured and the rest of its share is its difference. Not matched
    (a mismatch: ops decides): the gross clears each receivable up to what it captured, in order, the last one
    taking whatever is left (`distribute`), so an under- or over-settlement shows on the receivable; the fee is
    split in proportion to those shares.
    """
    if not shipments:
        return []
    if matched:
        weights = [s.captured for s in shipments]
        shares = allocate_money(gross, weights)
        fees = allocate_money(fee, weights)
        return [SettlementPosting(shipment_id=s.shipment_id, location_id=s.location_id, receivable=s.captured,
                                  fee=f, difference=share - s.captured)
                for s, share, f in zip(shipments, shares, fees, strict=True)]
    parts = distribute(gross, shipments)
    fees = allocate_money(fee, [max(share, Decimal(0)) for _, share in parts])
    return [SettlementPosting(shipment_id=s.shipment_id, location_id=s.location_id, receivable=share, fee=f)
            for (s, share), f in zip(parts, fees, strict=True)]

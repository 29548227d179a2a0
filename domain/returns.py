"""Return-to-refund: the return's state model and its pure rules.

Everything here is pure (no I/O, no clock): the workflow (workflows/return_to_refund.py) feeds it what the
events and activities said and applies what it returns, so the rules are unit-tested without Temporal
(tests/test_return_rules.py).

Quantities are base units (EA), as shipped lines are. Receipts and inspections name SKUs, not order lines;
they are allocated to the authorized lines of that SKU in authorization order.

Decisions (documented in the workflow's docstring too):
- a line asking for more than was shipped on that order line, naming a line never shipped, or naming another
  SKU than the one shipped on that line is refused whole, with its reason; the other lines go on.
- units received beyond what is authorized (or of a SKU not authorized) are NOT taken into the ledger: they are
  noted as `excess` on the receipt for ops to handle physically; only authorized units enter
  `pending_inspection`.
- units inspected beyond what is pending inspection are noted as excess and ignored.
- the refund covers the accepted units: received AND inspected, whatever the disposition (a unit the
  customer returned damaged is refunded; what happens to it is the retailer's loss), at the original line's
  unit price from the shipment record.

Release 2 (issue 17; the workflow calls these only on its v2 path):
- `authorize(..., already=)` counts what other returns of the order hold on each line (authorized and not
  released again); the count and the decision are made by the WMS adapter under the order's row lock
  (adapters/stub_wms.py), with this same rule. An over-return is refused with reason kind
  `over_return`.
- units received beyond the authorization are taken into `pending_inspection` all the same (never lost), on
  an `unauthorized_line` of their SKU; they are inspected like the others and never refunded.
- the refund is priced by the adapter at close: for each line, `share_of_units(charged, shipped, refunded
  before, accepted)` (domain/money.py), cumulative over all returns of that order line, so returning every
  unit, one return at a time, refunds exactly what was charged.
"""
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from domain.events import Disposition, ReturnAuthorized
from domain.money import Amount, round_money, share_of_units


class ReturnStage(StrEnum):
    """The `Stage` search attribute and the `stage` of the state query."""

    AWAITING_AUTHORIZATION = "awaiting_authorization"  # started by an early event; return.authorized not seen
    AWAITING_RECEIPT = "awaiting_receipt"
    AWAITING_INSPECTION = "awaiting_inspection"
    AWAITING_REFUND_SETTLEMENT = "awaiting_refund_settlement"  # refund issued, refund.settled not seen
    REFUNDED = "refunded"
    CLOSED_WITHOUT_REFUND = "closed_without_refund"  # inspected, but nothing accepted
    REJECTED = "rejected"  # every line refused at authorization
    EXPIRED = "expired"  # nothing received within return_not_received
    NEVER_OPENED = "never_opened"
    REFUND_REFUSED = "refund_refused"  # release 2: the payment refused the refund (over what it captured); case


class Refusal(StrEnum):
    """Why a requested return line was refused (release 2 records it beside the reason text)."""

    NOT_SHIPPED = "not_shipped"
    WRONG_SKU = "wrong_sku"
    OVER_RETURN = "over_return"  # more than shipped minus what other returns hold on the line


class Shipped(BaseModel):
    """What the original order shipped on one line (summed over its shipments), per EA."""

    line_id: str
    sku: str
    quantity: int
    unit_price: Amount
    currency: str
    amount: Amount | None = None  # release 2: the money charged for the line over its shipments
    location_id: str | None = None  # release 2: the location that shipped the line (its entity sold it)


class ReturnLineState(BaseModel):
    """One authorized (or refused) return line and its units by state.

    received = restocked + damaged + vendor_return + pending_inspection; accepted = what was inspected.
    """

    line_id: str
    sku: str
    requested: int  # what the authorization asked for
    customer_reason: str
    shipped: int = 0
    unit_price: Amount = Decimal(0)
    authorized: int = 0  # 0 when refused
    refused_reason: str | None = None
    received_at: dict[str, int] = Field(default_factory=dict)  # location -> units received there
    inspected_at: dict[str, int] = Field(default_factory=dict)  # location -> units dispositioned there
    restocked: int = 0
    damaged: int = 0  # dispositioned damaged, then written off
    vendor_return: int = 0  # dispositioned to vendor_return, awaiting return to the vendor
    # release 2
    line_no: int = 0  # position in the authorization (the adapter's key of the line)
    refusal: Refusal | None = None
    sale_location_id: str | None = None  # the location that shipped the line: its legal entity sold it
    unauthorized: bool = False  # units received without (or beyond) an authorization; never refunded
    refund: Amount | None = None  # priced by the adapter at close (cumulative over the line's returns)

    @property
    def received(self) -> int:
        return sum(self.received_at.values())

    @property
    def accepted(self) -> int:
        return self.restocked + self.damaged + self.vendor_return

    @property
    def pending_inspection(self) -> int:
        return self.received - self.accepted

    @property
    def refund_amount(self) -> Decimal:
        if self.refund is not None:
            return self.refund
        return round_money(self.unit_price * self.accepted)

    def summary(self) -> dict[str, Any]:
        """The line with its derived quantities, as the state query shows it."""
        return {**self.model_dump(mode="json"), "received": self.received, "accepted": self.accepted,
                "pending_inspection": self.pending_inspection, "refund_amount": str(self.refund_amount)}


class ReceiptState(BaseModel):
    location_id: str
    received_at: datetime
    units: dict[str, int] = Field(default_factory=dict)  # sku -> units taken into pending_inspection
    excess: dict[str, int] = Field(default_factory=dict)  # sku -> units received beyond the authorization


class Move(BaseModel):
    """Units of one line to disposition at one location."""

    line_id: str
    sku: str
    location_id: str
    disposition: Disposition
    quantity: int


class RefundState(BaseModel):
    amount: Amount
    currency: str
    payment_id: str | None = None  # release 2: the original payment the refund goes back to
    by_location: dict[str, Amount] = Field(default_factory=dict)  # release 2: per selling location (entity)
    refund_reference: str | None = None
    issued_at: datetime | None = None
    refund_id: str | None = None  # the payments provider's, from refund.settled
    settled_amount: Amount | None = None
    settled_at: datetime | None = None


class ReturnState(BaseModel):
    """What the `state` query answers (the read API's GET /returns/{return_id})."""

    workflow_id: str
    business_key: str
    return_id: str | None = None
    order_id: str | None = None
    channel: str | None = None
    stage: ReturnStage
    return_location_id: str | None = None
    currency: str | None = None
    lines: list[dict[str, Any]] = Field(default_factory=list)  # ReturnLineState.summary()
    receipts: list[ReceiptState] = Field(default_factory=list)
    inspection_excess: dict[str, int] = Field(default_factory=dict)
    refund: RefundState | None = None
    notes: list[str] = Field(default_factory=list)  # refused events, mismatches
    exception_cases: list[dict[str, Any]] = Field(default_factory=list)
    held_events: list[str] = Field(default_factory=list)


class ReturnProgress(BaseModel):
    """What a ReturnToRefund process keeps (release 3): its one state model, carried across continue-as-new.
    The `state` query shows it as a ReturnState."""

    stage: ReturnStage = ReturnStage.AWAITING_AUTHORIZATION
    authorization: ReturnAuthorized | None = None
    lines: list[ReturnLineState] = Field(default_factory=list)
    currency: str | None = None
    sale_location: str | None = None  # the location that shipped the authorized units: money is posted there
    payment_id: str | None = None  # the order's payment, the refund goes back to it
    window_ends: datetime | None = None  # the return window: return_not_received from the authorization
    receipts: list[ReceiptState] = Field(default_factory=list)
    last_receipt_at: datetime | None = None
    receiving_complete: bool = False  # set when the receipt grace or the window passed before all came back
    inspection_passes: int = 0
    inspection_excess: dict[str, int] = Field(default_factory=dict)
    refund: RefundState | None = None
    notes: list[str] = Field(default_factory=list)


class ReturnOutcome(BaseModel):
    workflow_id: str
    outcome: str  # refunded | closed_without_refund | rejected | expired | never_opened | refund_refused
    stage: ReturnStage
    received_units: int = 0
    accepted_units: int = 0
    refund_amount: Amount | None = None
    currency: str | None = None


# --- rules ---------------------------------------------------------------------------------------------------
def authorize(requested: Iterable[tuple[str, str, int, str]], shipped: Sequence[Shipped],
              already: Mapping[str, int] | None = None) -> list[ReturnLineState]:
    """Check each requested line (line_id, sku, quantity, customer reason) against what the order shipped.

    Two requested lines naming the same order line share what was shipped on it, in order. `already` (release
    2): line_id -> units other returns of the order hold on that line (authorized, not released again).
    """
    by_line = {s.line_id: s for s in shipped}
    held = dict(already or {})
    left = {s.line_id: s.quantity - held.get(s.line_id, 0) for s in shipped}
    out = []
    for n, (line_id, sku, quantity, reason) in enumerate(requested):
        line = ReturnLineState(line_id=line_id, sku=sku, requested=quantity, customer_reason=reason, line_no=n)
        ship = by_line.get(line_id)
        if ship is None or ship.quantity <= 0:
            line.refused_reason = f"line {line_id} was never shipped on this order"
            line.refusal = Refusal.NOT_SHIPPED
        elif ship.sku != sku:
            line.shipped, line.unit_price = ship.quantity, ship.unit_price
            line.refused_reason = f"line {line_id} shipped {ship.sku}, not {sku}"
            line.refusal = Refusal.WRONG_SKU
        else:
            line.shipped, line.unit_price = ship.quantity, ship.unit_price
            line.sale_location_id = ship.location_id
            if quantity > left[line_id]:
                others = held.get(line_id, 0)
                line.refused_reason = (f"{quantity} EA asked back but only {max(left[line_id], 0)} of "
                                       f"{ship.quantity} EA shipped on line {line_id} remain returnable"
                                       + (f" ({others} EA held by other returns of this order)" if others else ""))
                line.refusal = Refusal.OVER_RETURN
            else:
                line.authorized = quantity
                left[line_id] -= quantity
        out.append(line)
    return out


def refund_of_line(charged: Decimal, shipped: int, refunded_before: int, accepted: int) -> Decimal:
    """The refund for `accepted` units of an order line of `shipped` units charged `charged` in all, after
    `refunded_before` of its units were refunded by earlier returns: cumulative, so every unit returned (in any
    number of returns) refunds exactly `charged`. Never more units than shipped."""
    count = max(0, min(accepted, shipped - refunded_before))
    return share_of_units(charged, shipped, refunded_before, count)


def unauthorized_line(sku: str, sale_location_id: str | None = None) -> ReturnLineState:
    """The line that carries units of `sku` received without (or beyond) an authorization (release 2)."""
    return ReturnLineState(line_id=f"unauthorized:{sku}", sku=sku, requested=0, customer_reason="",
                           refused_reason="received without an authorization: in pending_inspection for ops, "
                                          "not refunded", unauthorized=True, sale_location_id=sale_location_id,
                           line_no=-1)


def pending_units(lines: Iterable[ReturnLineState]) -> int:
    return sum(ln.pending_inspection for ln in lines)


def all_received(lines: Iterable[ReturnLineState]) -> bool:
    """Every authorized unit has come back (release 2: receiving is complete)."""
    return all(ln.received >= ln.authorized for ln in lines if not ln.unauthorized)


def allocate_receipt(lines: Sequence[ReturnLineState], received: Mapping[str, int]
                     ) -> tuple[dict[str, int], dict[str, int]]:
    """Split received units (sku -> units) over the authorized lines not yet fully received.

    Returns (line_id -> units to receive, sku -> excess units not authorized)."""
    take: dict[str, int] = {}
    excess: dict[str, int] = {}
    for sku, qty in received.items():
        left = qty
        for line in lines:
            if line.sku != sku or left <= 0:
                continue
            room = line.authorized - line.received
            if room > 0:
                n = min(room, left)
                take[line.line_id] = take.get(line.line_id, 0) + n
                left -= n
        if left > 0:
            excess[sku] = excess.get(sku, 0) + left
    return take, excess


def allocate_inspection(lines: Sequence[ReturnLineState], inspected: Iterable[tuple[str, int, Disposition]]
                        ) -> tuple[list[Move], dict[str, int]]:
    """Disposition inspected units (sku, units, disposition) out of what is pending inspection, line by line
    and location by location in the order they were received.

    Returns (the moves, sku -> units inspected beyond what was pending)."""
    pending = {ln.line_id: {loc: q - ln.inspected_at.get(loc, 0) for loc, q in ln.received_at.items()}
               for ln in lines}
    moves: list[Move] = []
    excess: dict[str, int] = {}
    for sku, qty, disposition in inspected:
        left = qty
        for line in lines:
            if line.sku != sku:
                continue
            for loc, room in pending[line.line_id].items():
                if left <= 0:
                    break
                n = min(room, left)
                if n <= 0:
                    continue
                pending[line.line_id][loc] -= n
                left -= n
                moves.append(Move(line_id=line.line_id, sku=sku, location_id=loc, disposition=disposition,
                                  quantity=n))
        if left > 0:
            excess[sku] = excess.get(sku, 0) + left
    return moves, excess


def apply_moves(lines: Sequence[ReturnLineState], moves: Iterable[Move]) -> None:
    by_id = {ln.line_id: ln for ln in lines}
    for m in moves:
        line = by_id[m.line_id]
        line.inspected_at[m.location_id] = line.inspected_at.get(m.location_id, 0) + m.quantity
        if m.disposition is Disposition.RESTOCK:
            line.restocked += m.quantity
        elif m.disposition is Disposition.DAMAGED:
            line.damaged += m.quantity
        else:
            line.vendor_return += m.quantity


def refund_amount(lines: Iterable[ReturnLineState]) -> Decimal:
    """What the customer is owed: accepted units at the original line price."""
    return round_money(sum((ln.refund_amount for ln in lines), start=Decimal(0)))


def details_table(lines: Sequence[ReturnLineState]) -> tuple[list[str], list[list[object]]]:
    headers = ["line", "SKU", "asked", "authorized", "received", "restocked", "damaged", "vendor return",
               "pending inspection", "refund", "note"]
    rows: list[list[object]] = [
        [ln.line_id, ln.sku, ln.requested, ln.authorized, ln.received, ln.restocked, ln.damaged, ln.vendor_return,
         ln.pending_inspection, ln.refund_amount, ln.refused_reason or ""]
        for ln in lines
    ]
    return headers, rows

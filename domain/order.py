"""Reserve-to-fulfill: the reservation decision the `place` update answers (the contract's order.placed reply)."""
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from domain.events import OrderPlaced
from domain.money import Amount, round_money, share_of_units


class Decision(StrEnum):
    RESERVED = "reserved"
    PARTIALLY_RESERVED = "partially_reserved"
    REJECTED = "rejected"


class LineDecision(BaseModel):
    line_id: str
    reserved_quantity: int  # base units (EA)
    location_id: str | None = None
    reason: str | None = None  # why a line is short or rejected (unknown SKU, unknown unit, no stock)


class OrderDecision(BaseModel):
    workflow_id: str
    decision: Decision
    lines: list[LineDecision] = Field(default_factory=list)


# --- the order's state model and its pure rules ------------------------------------------------------------
# Everything below is pure (no I/O, no clock): the workflow feeds it what the activities answered and applies
# what it returns, so the rules are unit-tested without Temporal (tests/test_order_rules.py).

class OrderStage(StrEnum):
    """The `Stage` search attribute and the `stage` of the state query."""

    AWAITING_ORDER = "awaiting_order"  # started by an early event; order.placed not seen yet
    RESERVING = "reserving"
    AWAITING_PICK = "awaiting_pick"
    AWAITING_DISPATCH = "awaiting_dispatch"  # (some) units picked, ship order
    AWAITING_COLLECTION = "awaiting_collection"  # picked, pickup order
    PARTIALLY_SHIPPED = "partially_shipped"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    NEVER_OPENED = "never_opened"


class LineState(BaseModel):
    """One order line, its quantities in base units (EA) by state.

    ordered = reserved + picked + shipped + released + unreserved, where `unreserved` is what was never
    reserved (rejected or short at placement) and `released` what was reserved and later given back
    (short pick, cancellation, expired pickup, whole-order rejection)."""

    line_id: str
    sku: str
    uom: str
    ordered_uom_quantity: int  # as ordered, in `uom`
    ordered: int = 0  # EA; 0 when the line could not be converted
    unit_price: Amount = Decimal(0)  # per EA
    location_id: str | None = None
    reserved: int = 0
    picked: int = 0
    shipped: int = 0
    released: int = 0
    reason: str | None = None
    # release 2: the line's charged total (quantity x unit_price as ordered, to the cent); each shipment takes
    # its units' share of it (`charged_amount`), so the parts add up to it exactly
    amount: Amount | None = None

    @property
    def unreserved(self) -> int:
        return self.ordered - self.reserved - self.picked - self.shipped - self.released

    @property
    def open_units(self) -> int:
        """Units still held for this order (reserved or picked): what a cancellation gives back."""
        return self.reserved + self.picked


class ShipmentState(BaseModel):
    shipment_id: str
    location_id: str
    carrier: str | None = None
    tracking_number: str | None = None
    lines: dict[str, int] = Field(default_factory=dict)  # line_id -> EA
    amount: Amount = Decimal(0)
    # False: it left after the cancel had voided the payment; not handed to ShipToSettle, a
    # `shipped_after_cancel` case is open for ops instead (release 2)
    billed: bool = True


class ReleasedLine(BaseModel):
    line_id: str
    sku: str
    location_id: str
    released: int = 0  # reserved -> available
    unpicked: int = 0  # picked -> available


class CancelRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=500)
    requested_by: str = "ops"


class CancelResult(BaseModel):
    """What an ops cancellation (or order.cancelled) gave back."""

    workflow_id: str
    stage: OrderStage
    released: list[ReleasedLine] = Field(default_factory=list)
    payment_voided: bool = False
    shipped_units: int = 0  # already gone, not cancelled
    # locations whose WMS answered the cancel `already_dispatched`: their units stay picked and the order
    # waits for the shipment.dispatched, billed for what shipped (release 2)
    awaiting_dispatch: list[str] = Field(default_factory=list)


class OrderState(BaseModel):
    """The `state` query: what the read API serves for GET /orders/{channel}/{order_id}."""

    workflow_id: str
    business_key: str
    channel: str | None = None
    order_id: str | None = None
    stage: OrderStage
    mode: str | None = None
    currency: str | None = None
    payment_id: str | None = None
    decision: OrderDecision | None = None
    lines: list[LineState] = Field(default_factory=list)
    shipments: list[ShipmentState] = Field(default_factory=list)
    picked_locations: list[str] = Field(default_factory=list)
    payment_voided: bool = False
    cancel_reason: str | None = None
    intercepted_locations: list[str] = Field(default_factory=list)  # the WMS stopped the order there
    awaiting_dispatch: list[str] = Field(default_factory=list)  # the WMS answered the cancel: already dispatched
    exception_cases: list[dict[str, Any]] = Field(default_factory=list)
    held_events: list[str] = Field(default_factory=list)  # event types waiting for their turn


class OrderProgress(BaseModel):
    """A release-3 ReserveToFulfill's own state, in one model: what the state query shows of it, and what the
    next run resumes from after continue-as-new (the held events, seen IDs, clocks and cases travel apart)."""

    order: OrderPlaced | None = None
    stage: OrderStage = OrderStage.AWAITING_ORDER
    decision: OrderDecision | None = None
    lines: list[LineState] = Field(default_factory=list)
    shipments: list[ShipmentState] = Field(default_factory=list)
    picked_locations: list[str] = Field(default_factory=list)
    pick_tasks: list[str] = Field(default_factory=list)  # locations whose WMS pick task is created
    payment_voided: bool = False
    cancel_reason: str | None = None
    expired: bool = False  # the pickup was not collected in time
    intercepted: list[str] = Field(default_factory=list)  # locations the WMS stopped on a cancel (units put back)
    awaiting_dispatch: list[str] = Field(default_factory=list)  # the WMS answered the cancel `already_dispatched`


class OrderOutcome(BaseModel):
    workflow_id: str
    outcome: str  # fulfilled | partially_fulfilled | cancelled | rejected | expired | never_opened
    stage: OrderStage
    shipped_units: int = 0
    released_units: int = 0
    shipment_ids: list[str] = Field(default_factory=list)


# --- rules ------------------------------------------------------------------------------------------------

def unit_price_per_ea(unit_price: Decimal, factor: int) -> Decimal:
    """The order line's price per EA (an order line priced per CASE of 12 costs a twelfth per EA)."""
    if factor <= 1:
        return Decimal(unit_price)
    return (Decimal(unit_price) / factor).quantize(Decimal("0.0001"), rounding=ROUND_HALF_EVEN)


def charged_amount(line: LineState, quantity: int) -> Decimal:
    """What `quantity` EA shipping next cost of `line` (release 2): the share of the line total of units
    [shipped, shipped + quantity), cumulative rounding, so the line's shipments always add up to its total
    to the cent (a 10.00 line of 3 units ships as 3.33 + 3.34 + 3.33, never 10.02 or 9.96)."""
    if line.amount is None:
        return round_money(line.unit_price * quantity)
    return share_of_units(line.amount, line.ordered, line.shipped, quantity)


def currency_refusal(sku: str, item_currency: str, order_currency: str) -> str | None:
    """Why a line cannot be sold in the order's currency (release 2: the item master prices it in another)."""
    if item_currency != order_currency:
        return f"item {sku} is priced in {item_currency}, the order is in {order_currency}"
    return None


Need = tuple[str, int]  # (sku, EA wanted)
Allocation = tuple[str, int]  # (location_id, EA to reserve there)


def choose_sources(
    needs: dict[str, Need],
    available: dict[tuple[str, str], int],
    *,
    pickup_location: str | None = None,
    preferred: str | None = None,
    candidates: list[str] | None = None,
) -> dict[str, Allocation]:
    """Where each line is reserved: line_id -> (location, EA). A line comes from one location; lines the
    network cannot serve at all are left out (the caller rejects them as out of stock).

    - pickup: the pickup store, whatever it has (up to the line's quantity).
    - ship: the preferred node when it can fill every line; otherwise, repeatedly, the location that fills the
      most still-unserved units (ties: the preferred node, then location ID) takes every line it fills in full;
      lines no location fills in full go to the location with the most of that SKU.
    `available` is (sku, location) -> sellable units, safety stock already held back.
    """
    out: dict[str, Allocation] = {}
    # Within one location, two lines of the same SKU share its stock: allocate line by line from a copy.
    stock = dict(available)

    def take(line_id: str, location: str) -> None:
        sku, qty = needs[line_id]
        got = min(qty, stock.get((sku, location), 0))
        if got > 0:
            stock[(sku, location)] = stock.get((sku, location), 0) - got
            out[line_id] = (location, got)

    if pickup_location is not None:
        for line_id in needs:
            take(line_id, pickup_location)
        return out
    locations = sorted(set(candidates if candidates is not None else (loc for _, loc in available)))

    def fills_all(location: str) -> bool:
        left = dict(stock)
        for sku, qty in needs.values():
            if left.get((sku, location), 0) < qty:
                return False
            left[(sku, location)] -= qty
        return True

    if preferred and fills_all(preferred):
        for line_id in needs:
            take(line_id, preferred)
        return out
    unserved = dict(needs)
    while unserved:
        def full_lines(location: str) -> list[str]:
            left = dict(stock)
            lines = []
            for line_id, (sku, qty) in unserved.items():
                if left.get((sku, location), 0) >= qty:
                    left[(sku, location)] -= qty
                    lines.append(line_id)
            return lines

        scored = [(sum(unserved[i][1] for i in full_lines(loc)), loc) for loc in locations]
        scored = [(units, loc) for units, loc in scored if units > 0]
        if not scored:
            break
        best = max(scored, key=lambda s: (s[0], s[1] == preferred, _neg(s[1])))[1]
        for line_id in full_lines(best):
            take(line_id, best)
            unserved.pop(line_id)
    for line_id, (sku, _qty) in unserved.items():
        options = [(stock.get((sku, loc), 0), loc == preferred, _neg(loc), loc) for loc in locations]
        options = [o for o in options if o[0] > 0]
        if options:
            take(line_id, max(options)[3])
    return out


def _neg(location_id: str) -> tuple[int, ...]:
    """Sort key that makes the alphabetically first location win a `max` tie."""
    return tuple(-ord(c) for c in location_id)


def by_location(allocations: dict[str, Allocation]) -> dict[str, dict[str, int]]:
    """location -> line_id -> EA, in location order: one reservation movement per location."""
    out: dict[str, dict[str, int]] = {}
    for line_id, (location, qty) in sorted(allocations.items(), key=lambda a: (a[1][0], a[0])):
        out.setdefault(location, {})[line_id] = qty
    return out


def decide(workflow_id: str, lines: list[LineState]) -> OrderDecision:
    """The contract decision from the lines after reservation."""
    reserved = [ln.reserved for ln in lines]
    if not any(reserved):
        decision = Decision.REJECTED
    elif all(ln.reason is None and ln.reserved == ln.ordered for ln in lines):
        decision = Decision.RESERVED
    else:
        decision = Decision.PARTIALLY_RESERVED
    return OrderDecision(workflow_id=workflow_id, decision=decision, lines=[
        LineDecision(line_id=ln.line_id, reserved_quantity=ln.reserved, location_id=ln.location_id if ln.reserved else None,
                     reason=ln.reason)
        for ln in lines
    ])


def pick_result(reserved: int, picked: int) -> tuple[int, int]:
    """(picked, short) for a line with `reserved` units whose pick reported `picked`: a pick never takes more
    than was reserved; what was reserved and not picked is short and goes back to available."""
    got = max(0, min(reserved, picked))
    return got, reserved - got


def ship_quantity(picked: int, requested: int) -> int:
    """What a dispatch of `requested` units moves out of a line with `picked` units: never more than picked."""
    return max(0, min(picked, requested))


def details_table(lines: list[LineState]) -> tuple[list[str], list[list[object]]]:
    headers = ["line", "sku", "from", "ordered", "reserved", "picked", "shipped", "released", "note"]
    rows: list[list[object]] = [
        [ln.line_id, ln.sku, ln.location_id or "-", ln.ordered, ln.reserved, ln.picked, ln.shipped,
         ln.released + ln.unreserved, ln.reason or ""]
        for ln in lines
    ]
    return headers, rows

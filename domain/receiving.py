"""Receive-to-stock: the state a `ReceiveToStock` process shows and the pure rules it follows.

A purchase order from the ERP is received in any number of parts against its lines:

- `purchase_order.created` opens it. Each line is converted to base units (EA) with the item master, its unit cost
  with it (cost per EA = cost per unit of measure / pack size). A line with an unknown SKU or unit, a line ID used
  twice, or a currency other than the item's standard cost currency is refused with its reason (a variance
  against standard cost cannot be measured across currencies).
- `purchase_order.received`: the units enter `available` (the goods are there, whatever the paperwork says).
  Inventory is carried at standard cost; the PO's cost differs from it by the purchase price variance, so GRNI
  (goods received not invoiced) ends at what the supplier will invoice: ordered cost x units.
  A line received beyond ordered x (1 + tolerance) and a line the PO does not have are received all the same
  (the latter at standard cost: there is no PO price for it) and open a case for the buyer.
- The PO is done when every line is received in full, or when the ERP closes it (what is outstanding is
  cancelled).

No I/O here: the workflow feeds these functions what the activities returned.
"""
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from domain.errors import DomainError
from domain.events import PurchaseOrderLine, ReceiptLine
from domain.items import Item
from domain.money import Amount, round_money


class PoStage(StrEnum):
    AWAITING_ORDER = "awaiting_order"  # started by an early receipt or close; waiting for purchase_order.created
    OPEN = "open"  # created, nothing received yet
    RECEIVING = "receiving"  # part received
    RECEIVED = "received"  # closed: every line received in full
    CLOSED = "closed"  # closed by the ERP; what was outstanding is cancelled
    REFUSED = "refused"  # refused whole at creation (unknown location, no acceptable line)
    EXPIRED = "expired"  # never created within the open timeout

    @property
    def final(self) -> bool:
        return self in {PoStage.RECEIVED, PoStage.CLOSED, PoStage.REFUSED, PoStage.EXPIRED}


class PoLine(BaseModel):
    """One PO line, in base units (EA) at the PO's cost per EA; `on_po=False` for a line a receipt brought."""

    line_id: str
    sku: str
    as_ordered: str  # "2 CASE": what the PO said, before conversion
    ordered: int
    unit_cost: Amount  # the PO's cost per EA (standard cost for a line not on the PO)
    standard_cost: Amount  # the item's standard cost per EA: what inventory is carried at
    received: int = 0
    cancelled: int = 0  # outstanding when the ERP closed the PO
    on_po: bool = True

    @property
    def outstanding(self) -> int:
        return max(0, self.ordered - self.received - self.cancelled) if self.on_po else 0

    @property
    def over(self) -> int:
        return max(0, self.received - self.ordered) if self.on_po else self.received


class RefusedPoLine(BaseModel):
    line_id: str
    sku: str
    quantity: int
    uom: str = "EA"
    reason: str


class PoReceiptNote(BaseModel):
    receipt_id: str
    event_id: str
    location_id: str
    received_at: datetime
    lines: dict[str, int]  # line_id -> units received into available
    price_variance: Amount = Decimal(0)  # (PO cost - standard cost) x units, this receipt
    unknown_lines: dict[str, int] = Field(default_factory=dict)  # line_id -> units, lines the PO does not have
    refused: list[RefusedPoLine] = Field(default_factory=list)  # SKUs the item master does not know


class PoState(BaseModel):
    """What the `state` query returns (and `GET /purchase-orders/{po_id}` serves as JSON)."""

    workflow_id: str
    po_id: str
    stage: PoStage = PoStage.AWAITING_ORDER
    supplier_id: str | None = None
    location_id: str | None = None
    legal_entity: str | None = None
    currency: str | None = None
    expected_at: datetime | None = None
    overdue_at: datetime | None = None  # expected_at + grace: po_receipt_overdue breaches then
    over_receipt_tolerance: Decimal = Decimal("0.05")
    lines: list[PoLine] = Field(default_factory=list)
    refused_lines: list[RefusedPoLine] = Field(default_factory=list)
    receipts: list[PoReceiptNote] = Field(default_factory=list)
    receipt_ids: list[str] = Field(default_factory=list)  # every receipt_id seen, applied or not: each applied once
    refusal_reason: str | None = None
    close_reason: str | None = None
    created_at: datetime | None = None
    closed_at: datetime | None = None
    notes: list[str] = Field(default_factory=list)
    duplicate_events: int = 0
    ignored_events: list[str] = Field(default_factory=list)  # event ids held but never applied, at the end
    exceptions: list[dict[str, Any]] = Field(default_factory=list)

    def line(self, line_id: str) -> PoLine | None:
        return next((ln for ln in self.lines if ln.line_id == line_id), None)

    @property
    def skus(self) -> list[str]:
        return sorted({ln.sku for ln in self.lines} | {r.sku for r in self.refused_lines})

    @property
    def outstanding(self) -> int:
        return sum(ln.outstanding for ln in self.lines)

    @property
    def price_variance(self) -> Decimal:
        return sum((r.price_variance for r in self.receipts), Decimal(0))


class PoOutcome(BaseModel):
    workflow_id: str
    po_id: str
    stage: PoStage
    reason: str | None = None
    ordered: int = 0
    received: int = 0
    cancelled: int = 0
    over: int = 0
    price_variance: Amount = Decimal(0)


# --- rules --------------------------------------------------------------------------------------------------
def plan_order(lines: Iterable[PurchaseOrderLine], items: Mapping[str, Item],
               currency: str) -> tuple[list[PoLine], list[RefusedPoLine]]:
    """PO lines in EA at cost per EA; unknown SKU or unit, a repeated line ID, another currency: refused."""
    accepted: list[PoLine] = []
    refused: list[RefusedPoLine] = []
    seen: set[str] = set()
    for line in lines:
        def refuse(why: str, line: PurchaseOrderLine = line) -> None:
            refused.append(RefusedPoLine(line_id=line.line_id, sku=line.sku, quantity=line.quantity, uom=line.uom,
                                         reason=why))

        if line.line_id in seen:
            refuse(f"line {line.line_id} appears twice on the PO")
            continue
        seen.add(line.line_id)
        item = items.get(line.sku)
        if item is None:
            refuse(f"unknown SKU {line.sku}")
            continue
        if item.currency != currency:
            refuse(f"{line.sku} is costed in {item.currency}, the PO is in {currency}")
            continue
        try:
            units = item.to_base_units(line.quantity, line.uom)
        except DomainError as error:
            refuse(str(error))
            continue
        per_ea = Decimal(line.unit_cost) / item.units[line.uom]
        accepted.append(PoLine(line_id=line.line_id, sku=line.sku, as_ordered=f"{line.quantity} {line.uom}",
                               ordered=units, unit_cost=per_ea, standard_cost=Decimal(item.unit_cost)))
    return accepted, refused


class ReceiptPlan(BaseModel):
    on_po: dict[str, int]  # line_id -> units, lines of the PO (SKU as ordered)
    unknown: dict[str, tuple[str, int]]  # line_id -> (sku, units): not on the PO, SKU known to the item master
    refused: list[RefusedPoLine]  # SKU unknown to the item master: cannot enter the ledger


def plan_receipt(po_lines: Iterable[PoLine], received: Iterable[ReceiptLine],
                 known_skus: set[str]) -> ReceiptPlan:
    """Sort one receipt's lines: against the PO, not on it (received all the same), or refused."""
    by_id = {ln.line_id: ln for ln in po_lines if ln.on_po}
    on_po: dict[str, int] = {}
    unknown: dict[str, tuple[str, int]] = {}
    refused: list[RefusedPoLine] = []
    for line in received:
        po_line = by_id.get(line.line_id)
        if po_line is not None and po_line.sku == line.sku:
            on_po[line.line_id] = on_po.get(line.line_id, 0) + line.quantity
        elif line.sku not in known_skus:
            refused.append(RefusedPoLine(line_id=line.line_id, sku=line.sku, quantity=line.quantity,
                                         reason=f"unknown SKU {line.sku}: not received into the ledger"))
        else:
            key = line.line_id if po_line is None else f"{line.line_id}:{line.sku}"
            sku, units = unknown.get(key, (line.sku, 0))
            unknown[key] = (sku, units + line.quantity)
    return ReceiptPlan(on_po=on_po, unknown=unknown, refused=refused)


def price_variance(lines: Iterable[PoLine], units: Mapping[str, int]) -> Decimal:
    """(PO cost - standard cost) x units over the receipt's PO lines, to the cent: positive is unfavourable."""
    by_id = {ln.line_id: ln for ln in lines}
    total = sum(((by_id[lid].unit_cost - by_id[lid].standard_cost) * q for lid, q in units.items()), Decimal(0))
    return round_money(total)


def over_tolerance(lines: Iterable[PoLine], tolerance: Decimal) -> list[PoLine]:
    """PO lines received beyond ordered x (1 + tolerance)."""
    return [ln for ln in lines if ln.on_po and Decimal(ln.received) > Decimal(ln.ordered) * (1 + tolerance)]


def details_markdown(state: PoState) -> str:
    head = (f"**PO {state.po_id}** from {state.supplier_id or '?'} to {state.location_id or '?'} ({state.stage})"
            + (f", expected {state.expected_at:%Y-%m-%d %H:%M}" if state.expected_at else ""))
    rows = [f"| {ln.line_id} | {ln.sku} | {ln.as_ordered} | {ln.ordered} | {ln.received} | {ln.outstanding} | "
            f"{ln.cancelled} | {ln.unit_cost:.4f} | {ln.standard_cost} |" for ln in state.lines]
    rows += [f"| {r.line_id} | {r.sku} | {r.quantity} {r.uom} | refused: {r.reason} | | | | | |"
             for r in state.refused_lines]
    table = "\n".join(["| line | SKU | as ordered | ordered | received | outstanding | cancelled | PO cost/EA | "
                       "standard |", "|---|---|---|---|---|---|---|---|---|", *rows])
    tail = [f"Purchase price variance: {state.price_variance} {state.currency or ''}".rstrip()]
    if state.refusal_reason:
        tail.append(f"refused: {state.refusal_reason}")
    if state.close_reason:
        tail.append(f"closed: {state.close_reason}")
    if state.notes:
        tail.append("Notes: " + "; ".join(state.notes[-5:]))
    return "\n\n".join([head, table, *tail])

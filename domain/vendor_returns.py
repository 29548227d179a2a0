"""Vendor return: the state a `VendorReturn` process shows and the pure rules it follows.

Units customers returned (or stores found) unfit to sell are dispositioned to `vendor_return`; a return to vendor
(RTV) ships them back to the supplier:

- `vendor_return.shipped` takes at most what `vendor_return` holds of each SKU at the location out of the ledger
  (VENDOR_RETURN: Dr vendor credit receivable, Cr inventory, at standard cost). Units the notice names beyond
  that are not taken from sellable stock: they open a `vendor_return_short` case.
- `vendor_credit.received` settles the receivable: Dr accounts payable (the credit note is netted against what is
  owed the supplier), Cr receivable. A credit that differs settles the receivable in full all the same, the
  difference going to its own account (vendor credit variance) and to a `vendor_credit_mismatch` case.

No I/O here.
"""
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from domain.events import SkuQuantity
from domain.items import Item
from domain.money import Amount


class RtvStage(StrEnum):
    AWAITING_SHIPMENT = "awaiting_shipment"  # started by an early credit; waiting for vendor_return.shipped
    AWAITING_CREDIT = "awaiting_credit"  # shipped: the receivable is open
    CREDITED = "credited"  # closed: the credit settled the receivable (any difference to its account)
    NOTHING_RETURNED = "nothing_returned"  # closed: nothing of the notice was in vendor_return
    REFUSED = "refused"  # unknown location, or no SKU the item master knows
    EXPIRED = "expired"  # never shipped within the open timeout

    @property
    def final(self) -> bool:
        return self in {RtvStage.CREDITED, RtvStage.NOTHING_RETURNED, RtvStage.REFUSED, RtvStage.EXPIRED}


class RtvLine(BaseModel):
    sku: str
    requested: int  # what the shipment notice says left
    shipped: int = 0  # taken out of vendor_return
    short: int = 0  # named beyond what vendor_return held
    standard_cost: Amount = Decimal(0)

    @property
    def value(self) -> Decimal:
        return self.standard_cost * self.shipped


class RefusedRtvLine(BaseModel):
    sku: str
    quantity: int
    reason: str


class CreditNote(BaseModel):
    event_id: str
    amount: Amount
    currency: str
    received_at: datetime
    applied: bool  # False: another currency, not posted
    difference: Amount = Decimal(0)  # credited - receivable (negative: the vendor credited less)


class RtvState(BaseModel):
    """What the `state` query returns (and `GET /vendor-returns/{rtv_id}` serves)."""

    workflow_id: str
    rtv_id: str
    stage: RtvStage = RtvStage.AWAITING_SHIPMENT
    location_id: str | None = None
    legal_entity: str | None = None
    supplier_id: str | None = None
    currency: str | None = None
    lines: list[RtvLine] = Field(default_factory=list)
    refused_lines: list[RefusedRtvLine] = Field(default_factory=list)
    receivable: Amount = Decimal(0)
    credits: list[CreditNote] = Field(default_factory=list)
    shipped_at: datetime | None = None
    credit_due_at: datetime | None = None
    credited_at: datetime | None = None
    refusal_reason: str | None = None
    notes: list[str] = Field(default_factory=list)
    duplicate_events: int = 0
    ignored_events: list[str] = Field(default_factory=list)
    exceptions: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def skus(self) -> list[str]:
        return sorted({ln.sku for ln in self.lines} | {r.sku for r in self.refused_lines})


class RtvOutcome(BaseModel):
    workflow_id: str
    rtv_id: str
    stage: RtvStage
    reason: str | None = None
    shipped: int = 0
    short: int = 0
    receivable: Amount = Decimal(0)
    credited: Amount | None = None
    difference: Amount = Decimal(0)


# --- rules --------------------------------------------------------------------------------------------------
def plan_lines(lines: Iterable[SkuQuantity], items: Mapping[str, Item]) -> tuple[list[RtvLine], list[RefusedRtvLine],
                                                                              str | None]:
    """One line per SKU at standard cost; unknown SKUs and SKUs costed in another currency than the first are
    refused (one receivable, one currency). Returns (lines, refused, currency)."""
    merged: dict[str, RtvLine] = {}
    refused: list[RefusedRtvLine] = []
    currency: str | None = None
    for line in lines:
        item = items.get(line.sku)
        if item is None:
            refused.append(RefusedRtvLine(sku=line.sku, quantity=line.quantity, reason=f"unknown SKU {line.sku}"))
            continue
        currency = currency or item.currency
        if item.currency != currency:
            refused.append(RefusedRtvLine(sku=line.sku, quantity=line.quantity,
                                          reason=f"{line.sku} is costed in {item.currency}, the return in {currency}"))
            continue
        seen = merged.setdefault(line.sku, RtvLine(sku=line.sku, requested=0, standard_cost=Decimal(item.unit_cost)))
        seen.requested += line.quantity
    return list(merged.values()), refused, currency


def plan_shipment(lines: Iterable[RtvLine], held: Mapping[str, int]) -> dict[str, tuple[int, int]]:
    """sku -> (units out of vendor_return, units named beyond what it holds)."""
    out = {}
    for line in lines:
        take = min(line.requested, max(0, held.get(line.sku, 0)))
        out[line.sku] = (take, line.requested - take)
    return out


class CreditPlan(BaseModel):
    settle: Amount  # Dr accounts payable, Cr receivable
    short: Amount = Decimal(0)  # Dr vendor credit variance, Cr receivable
    over: Amount = Decimal(0)  # Dr accounts payable, Cr vendor credit variance


def plan_credit(receivable: Decimal, credited: Decimal) -> CreditPlan:
    """The receivable is cleared in full whatever was credited: the difference is the variance account's."""
    if credited >= receivable:
        return CreditPlan(settle=receivable, over=credited - receivable)
    return CreditPlan(settle=credited, short=receivable - credited)


def details_markdown(state: RtvState) -> str:
    head = (f"**RTV {state.rtv_id}** from {state.location_id or '?'} to supplier {state.supplier_id or '?'} "
            f"({state.stage})")
    rows = [f"| {ln.sku} | {ln.requested} | {ln.shipped} | {ln.short} | {ln.value:.2f} |" for ln in state.lines]
    rows += [f"| {r.sku} | {r.quantity} | refused: {r.reason} | | |" for r in state.refused_lines]
    table = "\n".join(["| SKU | on the notice | shipped | short | receivable |", "|---|---|---|---|---|", *rows])
    tail = [f"Receivable: {state.receivable} {state.currency or ''}".rstrip()]
    tail += [f"Credit {c.amount} {c.currency}" + (f", difference {c.difference}" if c.difference else "")
             + ("" if c.applied else " (not applied: another currency)") for c in state.credits]
    if state.refusal_reason:
        tail.append(f"refused: {state.refusal_reason}")
    return "\n\n".join([head, table, *tail])

"""Transfer: the state a `Transfer` process shows (its `state` query) and the pure rules it follows.

A transfer moves stock from one location to another through `in_transit`:

- `transfer.requested` opens it. Each line is converted to base units (EA) with the item master; an unknown
  SKU or unit is refused line by line, with its reason. Lines of one SKU are merged. What the source can
  spare is reserved; what it cannot is reported per line, and the transfer goes ahead with the rest
  (`PartialPolicy.ACCEPT`) or is refused whole (`REJECT`).
- `transfer.shipped` ships at most what is reserved per SKU; the rest of the reservation is released.
- `transfer.received` counts what arrived. Several receipts add up. Units beyond what is still in transit
  are an overage, taken into `available` at once. When everything shipped has arrived, receiving is final;
  otherwise it becomes final `receipt_grace` after the last receipt with no further receipt, and what is
  still in transit is written off as shrink in transit.

Release 2 (rule 3 of issue 17: any number of shipment notices and receipts, in any order; docs/transfers.md):

- A shipment notice (a truck) ships at most what is still reserved and unshipped; the rest stays reserved
  until shipping is final: the notice says `complete` (the last truck), nothing is left reserved, or the ship
  grace passes after the last notice. Only then is the unshipped rest released.
- A receipt that counts more than is in transit, while a later notice could still ship it, is *held*
  (recorded, not posted) up to what is still reserved and unshipped; the next notice matches it (shipped and
  received at once). Only once shipping is final does a held remainder become an overage; counts beyond what
  could still ship are an overage at once. So a later truck never becomes an overage, and every transfer
  conserves network units except a genuine overage or shrink, each with its `receipt_variance` case.

No I/O here: the workflow feeds these functions what the activities returned.
"""
from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from domain.errors import DomainError
from domain.events import SkuQuantityUom
from domain.items import Item
from domain.process import PartialPolicy

SHRINK_IN_TRANSIT = "shrink_in_transit"  # reason code of the write-off of a final shortage
RECEIPT_OVERAGE = "receipt_overage"  # reason code of units received beyond what was shipped


class TransferStage(StrEnum):
    AWAITING_REQUEST = "awaiting_request"  # started by an early event; waiting for transfer.requested
    REQUESTED = "requested"  # reserved at the source, WMS transfer shipment created
    IN_TRANSIT = "in_transit"  # shipped; units held in_transit on the destination
    RECEIVING = "receiving"  # part received; more may come within the receipt grace
    RECEIVED = "received"  # closed: every shipped unit received, written off or taken in as overage
    CANCELLED = "cancelled"  # cancelled before shipment (or a shipment notice carried nothing of it)
    REFUSED = "refused"  # refused whole at request: nothing reserved
    EXPIRED = "expired"  # never requested within the open timeout

    @property
    def final(self) -> bool:
        return self in {TransferStage.RECEIVED, TransferStage.CANCELLED, TransferStage.REFUSED,
                        TransferStage.EXPIRED}


class TransferLine(BaseModel):
    """One SKU of the transfer, in base units (EA)."""

    sku: str
    as_requested: str  # e.g. "2 CASE + 3 EA": what the request said, before conversion
    requested: int
    reserved: int = 0
    shortfall_reason: str | None = None  # why less than requested was reserved
    shipped: int = 0
    released: int = 0  # reserved but not shipped (or cancelled), back to available at the source
    received: int = 0  # counted at the destination over all receipts, overage included
    short: int = 0  # written off as shrink in transit when receiving became final
    over: int = 0  # received beyond what was shipped, taken into available
    # release 2: counted beyond what was in transit while a later notice could still ship it; recorded, not
    # posted (the units are still reserved at the source in the ledger) until a notice matches them or shipping
    # is final (then an overage). Held units are part of `received`; whenever some are held nothing is in transit.
    held: int = 0

    @property
    def in_transit(self) -> int:
        """Units shipped and neither received nor written off."""
        return max(0, self.shipped - min(self.received, self.shipped) - self.short)

    @property
    def unshipped(self) -> int:
        """Units still reserved at the source for this transfer: neither shipped nor released."""
        return max(0, self.reserved - self.shipped - self.released)


class RefusedLine(BaseModel):
    sku: str
    quantity: int
    uom: str
    reason: str


class ReceiptNote(BaseModel):
    event_id: str
    received_at: datetime
    lines: dict[str, int]  # sku -> units counted in this receipt
    into_available: dict[str, int] = Field(default_factory=dict)  # moved in_transit -> available
    overage: dict[str, int] = Field(default_factory=dict)  # beyond what was in transit
    held: dict[str, int] = Field(default_factory=dict)  # release 2: beyond in transit, held for a later notice
    refused: list[RefusedLine] = Field(default_factory=list)  # SKUs the item master does not know


class ShipmentNote(BaseModel):
    """One shipment notice (a truck), as applied (release 2)."""

    event_id: str
    notified_at: datetime
    lines: dict[str, int]  # sku -> units the notice says
    complete: bool = False  # the WMS says this is the last truck
    reserved_more: dict[str, int] = Field(default_factory=dict)  # reserved at the source for it (beyond the rest)
    shipped: dict[str, int] = Field(default_factory=dict)  # picked and shipped out of the reservation
    matched: dict[str, int] = Field(default_factory=dict)  # of those, held receipt units received at once
    explained_overage: dict[str, int] = Field(default_factory=dict)  # of those, an earlier overage undone
    beyond_reserved: dict[str, int] = Field(default_factory=dict)  # said beyond what was still reserved


class VarianceLine(BaseModel):
    sku: str
    shipped: int
    received: int
    short: int
    over: int


class TransferState(BaseModel):
    """What the `state` query returns (and the read API serves as JSON)."""

    workflow_id: str
    transfer_id: str
    stage: TransferStage = TransferStage.AWAITING_REQUEST
    from_location_id: str | None = None
    to_location_id: str | None = None
    from_legal_entity: str | None = None
    to_legal_entity: str | None = None
    intercompany: bool = False
    partial_policy: PartialPolicy = PartialPolicy.ACCEPT
    lines: list[TransferLine] = Field(default_factory=list)
    refused_lines: list[RefusedLine] = Field(default_factory=list)
    refusal_reason: str | None = None  # why the whole transfer was refused
    cancel_reason: str | None = None
    cancelled_by: str | None = None
    requested_at: datetime | None = None
    shipped_at: datetime | None = None
    shipped_beyond_reserved: dict[str, int] = Field(default_factory=dict)  # shipment notice beyond the reservation
    shipments: list[ShipmentNote] = Field(default_factory=list)  # release 2: the trucks, in the order applied
    ship_grace_until: datetime | None = None  # release 2: the unshipped rest is released then, unless a notice comes
    shipping_final_at: datetime | None = None  # release 2: no more is shipped out of the reservation from then on
    shipping_final_reason: str | None = None  # "complete" | "all reserved shipped" | "ship grace expired"
    receipts: list[ReceiptNote] = Field(default_factory=list)
    receipt_grace_until: datetime | None = None  # a shortage becomes final then, if no further receipt comes
    receipt_final_at: datetime | None = None
    receipt_final_reason: str | None = None  # "all received" | "grace expired"
    variance: list[VarianceLine] = Field(default_factory=list)
    duplicate_events: int = 0
    ignored_events: list[str] = Field(default_factory=list)  # event ids held but never applied, at the end
    exceptions: list[dict[str, Any]] = Field(default_factory=list)  # the process's cases (ProcessCases.refs())

    def line(self, sku: str) -> TransferLine | None:
        return next((line for line in self.lines if line.sku == sku), None)

    @property
    def skus(self) -> list[str]:
        return sorted({line.sku for line in self.lines} | {r.sku for r in self.refused_lines})

    @property
    def location_ids(self) -> list[str]:
        return sorted({loc for loc in (self.from_location_id, self.to_location_id) if loc})


class TransferOutcome(BaseModel):
    """What `Transfer.run` returns."""

    workflow_id: str
    transfer_id: str
    stage: TransferStage
    reason: str | None = None
    reserved: int = 0
    shipped: int = 0
    received: int = 0
    short: int = 0
    over: int = 0


class CancelRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=500)
    requested_by: str = "ops"


# --- rules --------------------------------------------------------------------------------------------------
def plan_request(lines: Iterable[SkuQuantityUom], items: Mapping[str, Item]) -> tuple[list[TransferLine],
                                                                                      list[RefusedLine]]:
    """Convert request lines to EA and merge them per SKU; refuse unknown SKUs and units line by line."""
    merged: dict[str, TransferLine] = {}
    refused: list[RefusedLine] = []
    for line in lines:
        item = items.get(line.sku)
        if item is None:
            refused.append(RefusedLine(sku=line.sku, quantity=line.quantity, uom=line.uom,
                                       reason=f"unknown SKU {line.sku}"))
            continue
        try:
            units = item.to_base_units(line.quantity, line.uom)
        except DomainError as error:
            refused.append(RefusedLine(sku=line.sku, quantity=line.quantity, uom=line.uom, reason=str(error)))
            continue
        said = f"{line.quantity} {line.uom}"
        seen = merged.get(line.sku)
        if seen is None:
            merged[line.sku] = TransferLine(sku=line.sku, as_requested=said, requested=units)
        else:
            seen.requested += units
            seen.as_requested += f" + {said}"
    return list(merged.values()), refused


class ReservationPlan(BaseModel):
    reserve: dict[str, int]  # sku -> units to reserve (positive only)
    shortfalls: dict[str, str]  # sku -> why less than requested
    refuse_whole: str | None = None  # the reason, when the transfer is refused whole


def plan_reservation(lines: Iterable[TransferLine], available: Mapping[str, int], policy: PartialPolicy,
                     location_id: str) -> ReservationPlan:
    """What to reserve at the source given what it has free (`available` after safety stock)."""
    reserve: dict[str, int] = {}
    shortfalls: dict[str, str] = {}
    lines = list(lines)
    for line in lines:
        free = max(0, available.get(line.sku, 0))
        units = min(line.requested, free)
        if units > 0:
            reserve[line.sku] = units
        if units < line.requested:
            shortfalls[line.sku] = f"{location_id} has {free} of {line.sku} available, {line.requested} requested"
    refuse = None
    if not lines:
        refuse = "no line of the request could be accepted"
    elif not reserve:
        refuse = f"nothing of the request is available at {location_id}"
    elif shortfalls and policy is PartialPolicy.REJECT:
        refuse = f"not everything is available at {location_id} and partial transfers are refused"
    return ReservationPlan(reserve=reserve if refuse is None else {}, shortfalls=shortfalls, refuse_whole=refuse)


class ShipmentPlan(BaseModel):
    ship: dict[str, int]  # sku -> units picked and shipped
    release: dict[str, int]  # sku -> reserved units not shipped
    beyond_reserved: dict[str, int]  # sku -> units the notice says beyond the reservation (or not on the transfer)


def plan_shipment(lines: Iterable[TransferLine], shipped: Mapping[str, int]) -> ShipmentPlan:
    """Ship at most what is reserved per SKU; release the rest of the reservation."""
    ship: dict[str, int] = {}
    release: dict[str, int] = {}
    beyond: dict[str, int] = {}
    reserved = {line.sku: line.reserved for line in lines}
    for sku, units in shipped.items():
        if units > reserved.get(sku, 0):
            beyond[sku] = units - reserved.get(sku, 0)
    for sku, held in reserved.items():
        if held <= 0:
            continue
        out = min(held, max(0, shipped.get(sku, 0)))
        if out:
            ship[sku] = out
        if held - out:
            release[sku] = held - out
    return ShipmentPlan(ship=ship, release=release, beyond_reserved=beyond)


class ReceiptPlan(BaseModel):
    into_available: dict[str, int]  # in_transit -> available at the destination
    overage: dict[str, int]  # beyond what is still in transit: straight into available, as an adjustment
    held: dict[str, int] = Field(default_factory=dict)  # release 2: held for a later notice, not posted


def plan_receipt(lines: Iterable[TransferLine], counted: Mapping[str, int]) -> ReceiptPlan:
    """Split one receipt's counts into what arrives out of in_transit and what is an overage."""
    in_transit = {line.sku: line.in_transit for line in lines}
    into: dict[str, int] = {}
    over: dict[str, int] = {}
    for sku, units in counted.items():
        arrives = min(units, in_transit.get(sku, 0))
        if arrives > 0:
            into[sku] = arrives
        if units - arrives > 0:
            over[sku] = units - arrives
    return ReceiptPlan(into_available=into, overage=over)


# --- release 2: several trucks and receipts in any order ------------------------------------------------------
def plan_extra_reserve(lines: Iterable[TransferLine], notified: Mapping[str, int],
                       available: Mapping[str, int]) -> dict[str, int]:
    """A notice beyond what is still reserved (the reservation was partial, or the rest was released when shipping
    became final and an overtaken notice arrives now): what to reserve more at the source, so those units ship
    out of the ledger instead of becoming an overage at the destination. At most what was requested and neither
    shipped nor still reserved, and at most what the source has free."""
    by_sku = {line.sku: line for line in lines}
    out: dict[str, int] = {}
    for sku, units in notified.items():
        line = by_sku.get(sku)
        if line is None:
            continue
        wanted = min(units - line.unshipped, line.requested - line.shipped - line.unshipped)
        take = min(wanted, max(0, available.get(sku, 0)))
        if take > 0:
            out[sku] = take
    return out


class NoticePlan(BaseModel):
    ship: dict[str, int]  # sku -> units picked and shipped out of the reservation (reserved -> in transit)
    match: dict[str, int]  # sku -> of those, units a receipt already counted (held): in transit -> available
    # sku -> of those, units a receipt already took in as an overage (shipping was final then): the overage is
    # undone out of in_transit (ADJUST in_transit -n, reason receipt_overage), so they are not counted twice
    explained_overage: dict[str, int] = Field(default_factory=dict)
    beyond_reserved: dict[str, int]  # sku -> units the notice says beyond what is still reserved


def plan_notice(lines: Iterable[TransferLine], notified: Mapping[str, int]) -> NoticePlan:
    """One more truck: ship at most what is still reserved and unshipped per SKU, and match units receipts
    counted before it (held ones first, then an overage already taken in). Nothing is released here."""
    by_sku = {line.sku: line for line in lines}
    ship: dict[str, int] = {}
    match: dict[str, int] = {}
    explained: dict[str, int] = {}
    beyond: dict[str, int] = {}
    for sku, units in notified.items():
        line = by_sku.get(sku)
        room = line.unshipped if line else 0
        out = min(max(0, units), room)
        if out:
            assert line is not None
            ship[sku] = out
            held = min(line.held, out)
            over = min(line.over, out - held)
            if held:
                match[sku] = held
            if over:
                explained[sku] = over
        if units > out:
            beyond[sku] = units - out
    return NoticePlan(ship=ship, match=match, explained_overage=explained, beyond_reserved=beyond)


def apply_notice(lines: Iterable[TransferLine], plan: NoticePlan) -> None:
    """Record a notice's plan on the lines once its movements are posted."""
    for line in lines:
        line.shipped += plan.ship.get(line.sku, 0)
        line.held -= plan.match.get(line.sku, 0)
        line.over -= plan.explained_overage.get(line.sku, 0)


def plan_receipt_v2(lines: Iterable[TransferLine], counted: Mapping[str, int], shipping_final: bool) -> ReceiptPlan:
    """Split one receipt's counts into what arrives out of in_transit, what is held for a later notice (only
    while shipping is not final, and at most what is still reserved and unshipped, less what is held already),
    and what is an overage at once (nothing a later truck could still explain)."""
    by_sku = {line.sku: line for line in lines}
    into: dict[str, int] = {}
    held: dict[str, int] = {}
    over: dict[str, int] = {}
    for sku, units in counted.items():
        line = by_sku.get(sku)
        arrives = min(units, line.in_transit if line else 0)
        rest = units - arrives
        hold = 0 if shipping_final or line is None else min(rest, max(0, line.unshipped - line.held))
        for plan, value in ((into, arrives), (held, hold), (over, rest - hold)):
            if value > 0:
                plan[sku] = value
    return ReceiptPlan(into_available=into, overage=over, held=held)


def apply_receipt(lines: Iterable[TransferLine], counted: Mapping[str, int], plan: ReceiptPlan) -> None:
    """Record a receipt on the lines once its movements are posted."""
    for line in lines:
        line.received += counted.get(line.sku, 0)
        line.held += plan.held.get(line.sku, 0)
        line.over += plan.overage.get(line.sku, 0)


def all_reserved_shipped(lines: Iterable[TransferLine]) -> bool:
    """Nothing is left reserved for the transfer: no later notice can ship anything out of the reservation."""
    return all(line.unshipped == 0 for line in lines)


class ShippingFinalPlan(BaseModel):
    release: dict[str, int]  # sku -> reserved and never shipped: back to available at the source
    overage: dict[str, int]  # sku -> still held: no notice will match it any more, so into available as overage


def plan_shipping_final(lines: Iterable[TransferLine]) -> ShippingFinalPlan:
    lines = list(lines)
    return ShippingFinalPlan(release={line.sku: line.unshipped for line in lines if line.unshipped},
                             overage={line.sku: line.held for line in lines if line.held})


def apply_shipping_final(lines: Iterable[TransferLine], plan: ShippingFinalPlan) -> None:
    for line in lines:
        line.released += plan.release.get(line.sku, 0)
        line.over += plan.overage.get(line.sku, 0)
        line.held -= plan.overage.get(line.sku, 0)


def sum_by_sku(lines: Iterable[Any]) -> dict[str, int]:
    """Event lines ({sku, quantity}) summed per SKU, in first-seen order."""
    out: dict[str, int] = {}
    for line in lines:
        out[line.sku] = out.get(line.sku, 0) + line.quantity
    return out


def outstanding(lines: Iterable[TransferLine]) -> dict[str, int]:
    """Units still in transit per SKU (only SKUs with some)."""
    return {line.sku: line.in_transit for line in lines if line.in_transit > 0}


def variance(lines: Iterable[TransferLine]) -> list[VarianceLine]:
    """The SKUs whose receipt differs from their shipment (after any write-off)."""
    return [
        VarianceLine(sku=line.sku, shipped=line.shipped, received=line.received, short=line.short, over=line.over)
        for line in lines if line.short or line.over
    ]


def describe_variance(variance_lines: list[VarianceLine]) -> tuple[str, dict[str, str]]:
    """A case summary and its per-SKU figures."""
    short = sum(v.short for v in variance_lines)
    over = sum(v.over for v in variance_lines)
    parts = []
    if short:
        parts.append(f"{short} short (written off as shrink in transit)")
    if over:
        parts.append(f"{over} over (taken into available)")
    details = {
        v.sku: f"shipped {v.shipped}, received {v.received}, short {v.short}, over {v.over}" for v in variance_lines
    }
    details["short_units"] = str(short)
    details["over_units"] = str(over)
    return "receipt differs from shipment: " + ", ".join(parts), details


def cancel_refusal(stage: TransferStage, shipment_held: bool, to_location_id: str | None) -> str | None:
    """Why `cancel` is refused now, or None when it may go ahead."""
    if stage is TransferStage.AWAITING_REQUEST:
        return "the transfer has not been requested yet: there is nothing to cancel"
    if stage in {TransferStage.IN_TRANSIT, TransferStage.RECEIVING, TransferStage.RECEIVED} or shipment_held:
        return (f"the transfer has already shipped: its units are in transit to {to_location_id}; receive them "
                "there and request a transfer back instead")
    if stage.final:
        return f"the transfer is already {stage}"
    return None


def details_markdown(state: TransferState) -> str:
    """Current details for the Temporal UI: one row per SKU."""
    head = (f"**Transfer {state.transfer_id}** {state.from_location_id or '?'} -> {state.to_location_id or '?'}"
            f" ({state.stage})")
    if state.intercompany:
        head += f", intercompany {state.from_legal_entity} -> {state.to_legal_entity}"
    rows = [
        f"| {line.sku} | {line.requested} | {line.reserved} | {line.shipped} | {line.received} | {line.in_transit}"
        f" | {line.short} | {line.over} |"
        for line in state.lines
    ]
    rows += [f"| {r.sku} | {r.quantity} {r.uom} | refused: {r.reason} | | | | | |" for r in state.refused_lines]
    table = "\n".join([
        "| SKU | requested | reserved | shipped | received | in transit | short | over |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ])
    notes = [n for n in (state.refusal_reason, state.cancel_reason and f"cancelled: {state.cancel_reason}") if n]
    if state.shipments:
        held = sum(line.held for line in state.lines)
        notes.append(f"{len(state.shipments)} shipment notice(s), {len(state.receipts)} receipt(s)"
                     + (f", {held} received units held for a later notice" if held else "")
                     + (f"; shipping final: {state.shipping_final_reason}" if state.shipping_final_reason else
                        "; more may ship"))
    return "\n\n".join([head, table, *notes])


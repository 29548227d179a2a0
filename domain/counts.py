"""Count-to-adjust: the state a `CountToAdjust` process shows and the pure rules it follows.

A cycle count says how many units of some SKUs were on hand at one location at one moment (`counted_at`).

- What a count finds on the shelf is the stock in the building that is not set aside: `available`, `reserved` and
  `picked` (COUNTED_BUCKETS). Units in transit, awaiting inspection, damaged or awaiting the vendor are counted by
  their own processes, not by a shelf count.
- The variance is counted minus what the ledger held at `counted_at` (the sum of the movements up to then), so a
  sale, a receipt or a reservation after the count is not a variance: it happened after the counter looked.
- A SKU within both tolerances (units and value at standard cost) is adjusted at once; beyond either, ops decide
  (approve or reject). An adjustment is a counted-adjustment movement of `available` with reason code
  `cycle_count`: Dr shrink / Cr inventory for a loss, Dr inventory / Cr shrink for a gain.
- Never negative stock: a loss larger than what is `available` now (the rest is held for running processes:
  reserved or picked) is adjusted down to zero and the remainder is left for ops in a `count_below_held` case,
  never taken out of a reservation.

No I/O here.
"""
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints

from domain.events import CountedQuantity
from domain.inventory import Bucket
from domain.items import Item
from domain.money import Amount

CYCLE_COUNT = "cycle_count"  # the adjustment's reason code
COUNTED_BUCKETS = (Bucket.AVAILABLE, Bucket.RESERVED, Bucket.PICKED)


class CountStage(StrEnum):
    EVALUATING = "evaluating"  # reading the ledger as of counted_at
    AWAITING_APPROVAL = "awaiting_approval"  # variances beyond tolerance wait for ops
    ADJUSTED = "adjusted"  # closed: every variance adjusted (within tolerance, or approved)
    REJECTED = "rejected"  # closed: ops rejected the variances beyond tolerance (those within were adjusted)
    REFUSED = "refused"  # unknown location, or no SKU the item master knows

    @property
    def final(self) -> bool:
        return self in {CountStage.ADJUSTED, CountStage.REJECTED, CountStage.REFUSED}


class LineStatus(StrEnum):
    MATCHED = "matched"  # no variance
    ADJUSTED = "adjusted"
    AWAITING_APPROVAL = "awaiting_approval"
    REJECTED = "rejected"


class CountLine(BaseModel):
    sku: str
    counted: int
    on_hand_at_count: int = 0  # available + reserved + picked in the ledger at counted_at
    variance: int = 0  # counted - on_hand_at_count
    standard_cost: Amount = Decimal(0)
    within_tolerance: bool = True
    status: LineStatus = LineStatus.MATCHED
    adjusted: int = 0  # units posted (signed)
    not_adjusted: int = 0  # units of a loss left alone: held for running processes (a count_below_held case)

    @property
    def value(self) -> Decimal:
        return self.standard_cost * self.variance


class RefusedCountLine(BaseModel):
    sku: str
    quantity: int
    reason: str


class DecisionRequest(BaseModel):
    """The `approve` / `reject` update's input. `decided_by` is the API's ops principal or the CLI user."""

    note: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    decided_by: Annotated[str, StringConstraints(min_length=1, max_length=200)] = "ops"


class Decision(BaseModel):
    decision: str  # "approved" | "rejected"
    note: str
    decided_by: str
    decided_at: datetime


class CountState(BaseModel):
    """What the `state` query returns (and `GET /counts/{count_id}` serves)."""

    workflow_id: str
    count_id: str
    stage: CountStage = CountStage.EVALUATING
    location_id: str | None = None
    legal_entity: str | None = None
    counted_at: datetime | None = None
    submitted_at: datetime | None = None
    tolerance_units: int = 2
    tolerance_value: Amount = Decimal("25.00")
    lines: list[CountLine] = Field(default_factory=list)
    refused_lines: list[RefusedCountLine] = Field(default_factory=list)
    refusal_reason: str | None = None
    decision: Decision | None = None
    approval_due_at: datetime | None = None
    notes: list[str] = Field(default_factory=list)
    duplicate_events: int = 0
    ignored_events: list[str] = Field(default_factory=list)
    exceptions: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def skus(self) -> list[str]:
        return sorted({ln.sku for ln in self.lines} | {r.sku for r in self.refused_lines})

    def shrink(self) -> Decimal:
        """Value adjusted out (losses), at standard cost."""
        return sum((ln.standard_cost * -ln.adjusted for ln in self.lines if ln.adjusted < 0), Decimal(0))

    def gain(self) -> Decimal:
        return sum((ln.standard_cost * ln.adjusted for ln in self.lines if ln.adjusted > 0), Decimal(0))


class CountOutcome(BaseModel):
    workflow_id: str
    count_id: str
    stage: CountStage
    reason: str | None = None
    adjusted_units: int = 0  # net, signed
    shrink: Amount = Decimal(0)
    gain: Amount = Decimal(0)
    not_adjusted: int = 0
    decided_by: str | None = None


# --- rules --------------------------------------------------------------------------------------------------
def plan_count(lines: Iterable[CountedQuantity], items: Mapping[str, Item]) -> tuple[list[CountLine],
                                                                                   list[RefusedCountLine]]:
    """One line per SKU (two shelves of one SKU add up); a SKU the item master does not know is refused."""
    counted: dict[str, int] = {}
    refused: list[RefusedCountLine] = []
    for line in lines:
        if line.sku not in items:
            refused.append(RefusedCountLine(sku=line.sku, quantity=line.quantity, reason=f"unknown SKU {line.sku}"))
            continue
        counted[line.sku] = counted.get(line.sku, 0) + line.quantity
    return [CountLine(sku=sku, counted=q, standard_cost=Decimal(items[sku].unit_cost))
            for sku, q in counted.items()], refused


def on_hand(buckets: Mapping[str, int]) -> int:
    """What a shelf count should find in these buckets."""
    return sum(buckets.get(b.value, 0) for b in COUNTED_BUCKETS)


def evaluate(lines: Iterable[CountLine], at_count: Mapping[str, Mapping[str, int]], tolerance_units: int,
             tolerance_value: Decimal) -> None:
    """Fill in each line's ledger figure at counted_at, its variance and whether it is within both tolerances."""
    for line in lines:
        line.on_hand_at_count = on_hand(at_count.get(line.sku, {}))
        line.variance = line.counted - line.on_hand_at_count
        line.within_tolerance = (abs(line.variance) <= tolerance_units
                                 and abs(line.value) <= tolerance_value)
        if line.variance == 0:
            line.status = LineStatus.MATCHED
        elif not line.within_tolerance:
            line.status = LineStatus.AWAITING_APPROVAL


def plan_adjustment(lines: Iterable[CountLine], available_now: Mapping[str, int]) -> dict[str, tuple[int, int]]:
    """sku -> (units to post, units of a loss left alone) for the lines given. A loss takes at most what is
    available now: the rest is held for running processes and is never taken from them."""
    out: dict[str, tuple[int, int]] = {}
    for line in lines:
        if line.variance == 0:
            continue
        if line.variance > 0:
            out[line.sku] = (line.variance, 0)
            continue
        free = max(0, available_now.get(line.sku, 0))
        take = min(-line.variance, free)
        out[line.sku] = (-take, -line.variance - take)
    return out


def details_markdown(state: CountState) -> str:
    head = (f"**Count {state.count_id}** at {state.location_id or '?'} ({state.stage})"
            + (f", counted {state.counted_at:%Y-%m-%d %H:%M}" if state.counted_at else ""))
    rows = [f"| {ln.sku} | {ln.counted} | {ln.on_hand_at_count} | {ln.variance:+d} | {ln.value:.2f} | "
            f"{'yes' if ln.within_tolerance else 'no'} | {ln.status} | {ln.adjusted:+d} | {ln.not_adjusted} |"
            for ln in state.lines]
    rows += [f"| {r.sku} | {r.quantity} | refused: {r.reason} | | | | | | |" for r in state.refused_lines]
    table = "\n".join(["| SKU | counted | ledger at count | variance | value | within tolerance | status | "
                       "adjusted | held back |", "|---|---|---|---|---|---|---|---|---|", *rows])
    tail = [f"Tolerance: {state.tolerance_units} units and {state.tolerance_value} per SKU"]
    if state.decision:
        d = state.decision
        tail.append(f"{d.decision} by {d.decided_by}: {d.note}")
    if state.refusal_reason:
        tail.append(f"refused: {state.refusal_reason}")
    return "\n\n".join([head, table, *tail])

"""The canonical inventory model: buckets, the movements between them, and the rule that refuses the rest.

Every change to stock is a movement. This module says which movements exist and what each one does to the
buckets; the ledger (activities) applies them atomically and idempotently. Keeping the rule pure lets the
workflows, the stub ERP and the property tests share one definition.
"""
from collections.abc import Mapping
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain.errors import DomainError, ErrorType


class Bucket(StrEnum):
    AVAILABLE = "available"
    RESERVED = "reserved"
    PICKED = "picked"
    IN_TRANSIT = "in_transit"
    PENDING_INSPECTION = "pending_inspection"
    DAMAGED = "damaged"
    VENDOR_RETURN = "vendor_return"


class MovementKind(StrEnum):
    RECEIPT = "receipt"  # goods in from a supplier or opening stock -> available
    RETURN_RECEIPT = "return_receipt"  # customer return -> pending_inspection
    RESERVE = "reserve"  # available -> reserved
    RELEASE = "release"  # reserved -> available
    PICK = "pick"  # reserved -> picked
    UNPICK = "unpick"  # picked -> available
    SHIP = "ship"  # picked -> gone (shipped, or handed over to the customer)
    TRANSFER_SHIP = "transfer_ship"  # picked at source -> in_transit held on the destination
    TRANSFER_RECEIPT = "transfer_receipt"  # in_transit -> available, at the destination
    DISPOSITION = "disposition"  # pending_inspection -> available | damaged | vendor_return
    WRITE_OFF = "write_off"  # damaged -> gone
    VENDOR_RETURN = "vendor_return"  # vendor_return -> gone
    ADJUST = "adjust"  # counted adjustment of one bucket, signed, with a reason code


# (from bucket, to bucket) for the movements whose buckets are fixed. None is outside the building.
FIXED_TRANSITIONS: Mapping[MovementKind, tuple[Bucket | None, Bucket | None]] = {
    MovementKind.RECEIPT: (None, Bucket.AVAILABLE),
    MovementKind.RETURN_RECEIPT: (None, Bucket.PENDING_INSPECTION),
    MovementKind.RESERVE: (Bucket.AVAILABLE, Bucket.RESERVED),
    MovementKind.RELEASE: (Bucket.RESERVED, Bucket.AVAILABLE),
    MovementKind.PICK: (Bucket.RESERVED, Bucket.PICKED),
    MovementKind.UNPICK: (Bucket.PICKED, Bucket.AVAILABLE),
    MovementKind.SHIP: (Bucket.PICKED, None),
    MovementKind.TRANSFER_SHIP: (Bucket.PICKED, Bucket.IN_TRANSIT),
    MovementKind.TRANSFER_RECEIPT: (Bucket.IN_TRANSIT, Bucket.AVAILABLE),
    MovementKind.WRITE_OFF: (Bucket.DAMAGED, None),
    MovementKind.VENDOR_RETURN: (Bucket.VENDOR_RETURN, None),
}
DISPOSITION_TARGETS = frozenset({Bucket.AVAILABLE, Bucket.DAMAGED, Bucket.VENDOR_RETURN})


class MovementLine(BaseModel):
    """One SKU's part of a movement, in base units (EA).

    `to_location_id` only for transfer_ship (the units are held in_transit on the destination);
    `to_bucket` only for disposition; `bucket` and a signed `quantity` only for adjust; `sale_location_id`
    only for return_receipt: the location that shipped the returned units, whose legal entity sold them and
    reverses their cost of goods (with intercompany entries when they land in another entity). It moves no
    units: the buckets are those of `location_id`.
    """

    model_config = ConfigDict(frozen=True)

    sku: str
    location_id: str
    quantity: int
    to_location_id: str | None = None
    to_bucket: Bucket | None = None
    bucket: Bucket | None = None
    sale_location_id: str | None = None


class BucketDelta(BaseModel):
    model_config = ConfigDict(frozen=True)

    sku: str
    location_id: str
    bucket: Bucket
    delta: int


class MovementRequest(BaseModel):
    """A movement as a process asks the ledger for it.

    `key` is the transaction key, derived by the workflow from its own identity (never random), so a
    retried or replayed call applies once. `reason_code` is required for adjust.
    """

    key: str = Field(min_length=1, max_length=300)
    kind: MovementKind
    lines: list[MovementLine] = Field(min_length=1)
    reason: str
    reason_code: str | None = None
    workflow_id: str
    run_id: str
    reference: str | None = None  # the business document: order, shipment, transfer or return

    @model_validator(mode="after")
    def _check(self) -> "MovementRequest":
        for line in self.lines:
            check_line(self.kind, line)
        if self.kind is MovementKind.ADJUST and not self.reason_code:
            raise ValueError("adjust needs a reason_code")
        return self


def check_line(kind: MovementKind, line: MovementLine) -> None:
    """Refuse a line that is not a legal instance of `kind` (the shape, not the stock level)."""

    def refuse(why: str) -> DomainError:
        return DomainError(ErrorType.INVALID_TRANSITION, f"{kind}: {why}", kind=str(kind), sku=line.sku)

    if kind is MovementKind.ADJUST:
        if line.bucket is None or line.quantity == 0:
            raise refuse("an adjustment names one bucket and a non-zero signed quantity")
        return
    if line.quantity <= 0:
        raise refuse(f"quantity must be positive, got {line.quantity}")
    if line.bucket is not None:
        raise refuse("only adjust names a bucket")
    if kind is MovementKind.TRANSFER_SHIP:
        if not line.to_location_id or line.to_location_id == line.location_id:
            raise refuse("a transfer ships to another location")
    elif line.to_location_id is not None:
        raise refuse("only transfer_ship names a destination")
    if kind is MovementKind.DISPOSITION:
        if line.to_bucket not in DISPOSITION_TARGETS:
            raise refuse(f"disposition goes to available, damaged or vendor_return, not {line.to_bucket}")
    elif line.to_bucket is not None:
        raise refuse("only disposition names a target bucket")
    if line.sale_location_id is not None and kind is not MovementKind.RETURN_RECEIPT:
        raise refuse("only return_receipt names the location that sold the units")


def deltas(kind: MovementKind, line: MovementLine) -> list[BucketDelta]:
    """What `line` of a `kind` movement does to the buckets. Raises InvalidTransition for an illegal one."""
    check_line(kind, line)
    if kind is MovementKind.ADJUST:
        assert line.bucket is not None
        return [BucketDelta(sku=line.sku, location_id=line.location_id, bucket=line.bucket, delta=line.quantity)]
    if kind is MovementKind.DISPOSITION:
        source, target = Bucket.PENDING_INSPECTION, line.to_bucket
    else:
        source, target = FIXED_TRANSITIONS[kind]
    out: list[BucketDelta] = []
    if source is not None:
        out.append(BucketDelta(sku=line.sku, location_id=line.location_id, bucket=source, delta=-line.quantity))
    if target is not None:
        at = line.to_location_id or line.location_id
        out.append(BucketDelta(sku=line.sku, location_id=at, bucket=target, delta=line.quantity))
    return out


Balances = dict[tuple[str, str, Bucket], int]


def apply(balances: Mapping[tuple[str, str, Bucket], int], kind: MovementKind, lines: list[MovementLine]) -> Balances:
    """Apply a whole movement to an in-memory balance map, all or nothing; no bucket may go below zero."""
    result: Balances = dict(balances)
    for line in lines:
        for d in deltas(kind, line):
            key = (d.sku, d.location_id, d.bucket)
            after = result.get(key, 0) + d.delta
            if after < 0:
                raise DomainError(
                    ErrorType.INSUFFICIENT_STOCK,
                    f"{d.sku} at {d.location_id}: {d.bucket} has {result.get(key, 0)}, needs {-d.delta}",
                    sku=d.sku,
                    location_id=d.location_id,
                    bucket=str(d.bucket),
                )
            result[key] = after
    return result

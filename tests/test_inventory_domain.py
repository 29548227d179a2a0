"""The pure inventory and journal rules (no I/O): what each movement does, what it refuses, what it posts."""
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devtools.catalog import ITEMS, LOCATIONS, opening_movements
from domain.errors import DomainError, ErrorType
from domain.inventory import Bucket, MovementKind, MovementLine, MovementRequest, apply, deltas
from domain.items import Item
from domain.journal import INVENTORY_ACCOUNTS, JournalEntry, movement_postings

pytestmark = pytest.mark.unit
K = MovementKind
ENTITY = {"DC": "E1", "ST": "E1", "FAR": "E2"}


def one(sku: str = "A", loc: str = "DC", quantity: int = 1, **kw: object) -> MovementLine:
    return MovementLine(sku=sku, location_id=loc, quantity=quantity, **kw)


@pytest.mark.parametrize(("kind", "extra", "expected"), [
    (K.RECEIPT, {}, {("DC", Bucket.AVAILABLE): 3}),
    (K.RETURN_RECEIPT, {}, {("DC", Bucket.PENDING_INSPECTION): 3}),
    (K.RESERVE, {}, {("DC", Bucket.AVAILABLE): -3, ("DC", Bucket.RESERVED): 3}),
    (K.RELEASE, {}, {("DC", Bucket.RESERVED): -3, ("DC", Bucket.AVAILABLE): 3}),
    (K.PICK, {}, {("DC", Bucket.RESERVED): -3, ("DC", Bucket.PICKED): 3}),
    (K.UNPICK, {}, {("DC", Bucket.PICKED): -3, ("DC", Bucket.AVAILABLE): 3}),
    (K.SHIP, {}, {("DC", Bucket.PICKED): -3}),
    (K.TRANSFER_SHIP, {"to_location_id": "FAR"}, {("DC", Bucket.PICKED): -3, ("FAR", Bucket.IN_TRANSIT): 3}),
    (K.TRANSFER_RECEIPT, {}, {("DC", Bucket.IN_TRANSIT): -3, ("DC", Bucket.AVAILABLE): 3}),
    (K.DISPOSITION, {"to_bucket": Bucket.DAMAGED}, {("DC", Bucket.PENDING_INSPECTION): -3, ("DC", Bucket.DAMAGED): 3}),
    (K.WRITE_OFF, {}, {("DC", Bucket.DAMAGED): -3}),
    (K.VENDOR_RETURN, {}, {("DC", Bucket.VENDOR_RETURN): -3}),
    (K.ADJUST, {"bucket": Bucket.AVAILABLE}, {("DC", Bucket.AVAILABLE): 3}),
])
def test_each_movement_moves_what_the_contract_says(kind: MovementKind, extra: dict, expected: dict) -> None:
    got = {(d.location_id, d.bucket): d.delta for d in deltas(kind, one(quantity=3, **extra))}
    assert got == expected


@pytest.mark.parametrize(("kind", "line"), [
    (K.RECEIPT, one(quantity=0)),
    (K.RESERVE, one(quantity=-1)),
    (K.SHIP, one(to_location_id="FAR")),
    (K.TRANSFER_SHIP, one()),
    (K.TRANSFER_SHIP, one(to_location_id="DC")),
    (K.DISPOSITION, one(to_bucket=Bucket.RESERVED)),
    (K.DISPOSITION, one()),
    (K.PICK, one(bucket=Bucket.AVAILABLE)),
    (K.ADJUST, one(quantity=0, bucket=Bucket.AVAILABLE)),
    (K.ADJUST, one()),
])
def test_other_shapes_are_refused_as_invalid_transitions(kind: MovementKind, line: MovementLine) -> None:
    with pytest.raises(DomainError) as refused:
        deltas(kind, line)
    assert refused.value.type is ErrorType.INVALID_TRANSITION


def test_apply_is_all_or_nothing() -> None:
    start = {("A", "DC", Bucket.AVAILABLE): 2}
    with pytest.raises(DomainError) as refused:
        apply(start, K.RESERVE, [one(quantity=2), one(quantity=1)])
    assert refused.value.type is ErrorType.INSUFFICIENT_STOCK
    assert start == {("A", "DC", Bucket.AVAILABLE): 2}


def test_units_convert_or_are_refused() -> None:
    item = Item(sku="A", name="a", barcode="1", units={"EA": 1, "CASE": 12}, unit_cost=Decimal(1), price=Decimal(2))
    assert item.to_base_units(3, "CASE") == 36
    with pytest.raises(DomainError) as refused:
        item.to_base_units(1, "PALLET")
    assert refused.value.type is ErrorType.UNKNOWN_UNIT


movements = st.builds(
    lambda kind, qty, far, target, bucket, neg: (kind, one(
        quantity=-qty if (kind is K.ADJUST and neg) else qty,
        to_location_id=("FAR" if far else "ST") if kind is K.TRANSFER_SHIP else None,
        to_bucket=target if kind is K.DISPOSITION else None,
        bucket=bucket if kind is K.ADJUST else None,
    )),
    st.sampled_from(list(MovementKind)), st.integers(1, 50), st.booleans(),
    st.sampled_from([Bucket.AVAILABLE, Bucket.DAMAGED, Bucket.VENDOR_RETURN]), st.sampled_from(list(Bucket)),
    st.booleans(),
)


@settings(max_examples=200)
@given(st.lists(movements, max_size=40), st.decimals(min_value=Decimal("0.01"), max_value=Decimal("500"), places=2))
def test_journal_follows_the_units_whatever_the_sequence(seq: list, cost: Decimal) -> None:
    """Applying any sequence (refusals skipped): nothing negative, every entry balanced, and per entity the
    inventory accounts equal units x cost — the invariant the checker enforces on the database."""
    balances: dict = {}
    value: dict[str, Decimal] = {}
    for kind, line in seq:
        try:
            balances = apply(balances, kind, [line])
        except DomainError as error:
            assert error.type is ErrorType.INSUFFICIENT_STOCK
            continue
        for entity, lines in movement_postings(kind, line, cost, ENTITY):
            JournalEntry(key="k", legal_entity=entity, currency="USD", memo="m", lines=lines)  # validates balance
            for jl in lines:
                if jl.account in INVENTORY_ACCOUNTS:
                    value[entity] = value.get(entity, Decimal(0)) + jl.debit - jl.credit
    assert all(q >= 0 for q in balances.values())
    for entity in ("E1", "E2"):
        units = sum(q for (_, loc, _), q in balances.items() if ENTITY[loc] == entity)
        assert value.get(entity, Decimal(0)) == units * cost


def test_opening_movements_are_valid_receipts_with_stable_keys() -> None:
    moves = opening_movements()
    assert [m.key for m in moves] == [m.key for m in opening_movements()]
    assert {m.lines[0].location_id for m in moves} == {loc.location_id for loc in LOCATIONS}
    assert all(isinstance(m, MovementRequest) and m.kind is K.RECEIPT for m in moves)
    known = {i.sku for i in ITEMS}
    assert all(line.sku in known and line.quantity > 0 for m in moves for line in m.lines)

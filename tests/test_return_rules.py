"""The return's pure rules: authorization against shipped lines, receipt and inspection allocation, refund."""
from decimal import Decimal

import pytest

from domain.errors import DomainError
from domain.events import Disposition
from domain.inventory import MovementKind, MovementLine, deltas
from domain.journal import Account, JournalLine, movement_postings
from domain.returns import (
    Refusal,
    Shipped,
    all_received,
    allocate_inspection,
    allocate_receipt,
    apply_moves,
    authorize,
    details_table,
    pending_units,
    refund_amount,
    refund_of_line,
    unauthorized_line,
)

SHIPPED = [
    Shipped(line_id="1", sku="A", quantity=3, unit_price=Decimal("10.00"), currency="USD"),
    Shipped(line_id="2", sku="B", quantity=1, unit_price=Decimal("4.50"), currency="USD"),
    Shipped(line_id="3", sku="A", quantity=2, unit_price=Decimal("8.00"), currency="USD"),
]


def test_lines_within_what_shipped_are_authorized_the_rest_refused_with_reasons() -> None:
    lines = authorize([("1", "A", 2, "too big"), ("2", "B", 2, "no"), ("9", "C", 1, "?"), ("3", "B", 1, "x")],
                      SHIPPED)
    assert [(ln.line_id, ln.authorized) for ln in lines] == [("1", 2), ("2", 0), ("9", 0), ("3", 0)]
    assert lines[0].refused_reason is None and lines[0].unit_price == Decimal("10.00")
    assert "only 1 of 1 EA" in (lines[1].refused_reason or "")
    assert "never shipped" in (lines[2].refused_reason or "")
    assert "shipped A, not B" in (lines[3].refused_reason or "")


def test_two_requests_for_one_line_share_what_shipped() -> None:
    lines = authorize([("1", "A", 2, "r"), ("1", "A", 2, "r")], SHIPPED)
    assert [ln.authorized for ln in lines] == [2, 0]
    assert "only 1 of 3 EA" in (lines[1].refused_reason or "")


def test_receipt_fills_authorized_lines_in_order_and_notes_the_excess() -> None:
    lines = authorize([("1", "A", 2, "r"), ("3", "A", 1, "r"), ("2", "B", 1, "r")], SHIPPED)
    take, excess = allocate_receipt(lines, {"A": 4, "C": 1})
    assert take == {"1": 2, "3": 1}
    assert excess == {"A": 1, "C": 1}
    lines[0].received_at["ST"] = 2
    take, excess = allocate_receipt(lines, {"A": 2})
    assert take == {"3": 1} and excess == {"A": 1}


def test_inspection_dispositions_pending_units_by_line_and_location() -> None:
    lines = authorize([("1", "A", 3, "r"), ("3", "A", 2, "r")], SHIPPED)
    lines[0].received_at = {"ST": 2, "DC": 1}
    lines[1].received_at = {"ST": 1}
    moves, excess = allocate_inspection(lines, [("A", 3, Disposition.RESTOCK), ("A", 2, Disposition.DAMAGED),
                                                ("B", 1, Disposition.RESTOCK)])
    assert [(m.line_id, m.location_id, m.disposition, m.quantity) for m in moves] == [
        ("1", "ST", Disposition.RESTOCK, 2), ("1", "DC", Disposition.RESTOCK, 1),
        ("3", "ST", Disposition.DAMAGED, 1),
    ]
    assert excess == {"A": 1, "B": 1}
    apply_moves(lines, moves)
    assert (lines[0].restocked, lines[0].pending_inspection) == (3, 0)
    assert (lines[1].damaged, lines[1].pending_inspection, lines[1].received) == (1, 0, 1)
    # refund: the accepted units at their own line's price
    assert refund_amount(lines) == Decimal("38.00")


def test_units_not_inspected_stay_pending_and_are_not_refunded() -> None:
    lines = authorize([("1", "A", 3, "r")], SHIPPED)
    lines[0].received_at = {"ST": 3}
    moves, _ = allocate_inspection(lines, [("A", 1, Disposition.VENDOR_RETURN)])
    apply_moves(lines, moves)
    assert (lines[0].vendor_return, lines[0].pending_inspection, lines[0].accepted) == (1, 2, 1)
    assert refund_amount(lines) == Decimal("10.00")
    headers, rows = details_table(lines)
    assert rows[0][headers.index("pending inspection")] == 2


# --- release 2 (issue 17) -------------------------------------------------------------------------------------
def test_what_other_returns_hold_is_not_returnable_again_and_the_refusal_is_an_over_return() -> None:
    lines = authorize([("1", "A", 2, "r"), ("2", "B", 1, "r"), ("9", "C", 1, "r"), ("3", "B", 1, "r")], SHIPPED,
                      already={"1": 2, "2": 1})
    assert [(ln.line_id, ln.authorized, ln.refusal) for ln in lines] == [
        ("1", 0, Refusal.OVER_RETURN), ("2", 0, Refusal.OVER_RETURN), ("9", 0, Refusal.NOT_SHIPPED),
        ("3", 0, Refusal.WRONG_SKU)]
    assert "only 1 of 3 EA" in (lines[0].refused_reason or "")
    assert "(2 EA held by other returns of this order)" in (lines[0].refused_reason or "")
    assert "only 0 of 1 EA" in (lines[1].refused_reason or "")
    assert [ln.line_no for ln in lines] == [0, 1, 2, 3]
    # what is left is still returnable
    [left] = authorize([("1", "A", 1, "r")], SHIPPED, already={"1": 2})
    assert (left.authorized, left.refusal) == (1, None)


def test_a_ten_euro_line_of_three_units_returned_unit_by_unit_refunds_exactly_ten() -> None:
    parts = [refund_of_line(Decimal("10.00"), 3, before, 1) for before in range(3)]
    assert parts == [Decimal("3.33"), Decimal("3.34"), Decimal("3.33")] and sum(parts) == Decimal("10.00")
    # in any cut: two then one, one then two
    assert refund_of_line(Decimal("10.00"), 3, 0, 2) + refund_of_line(Decimal("10.00"), 3, 2, 1) == Decimal("10.00")
    assert refund_of_line(Decimal("10.00"), 3, 0, 1) + refund_of_line(Decimal("10.00"), 3, 1, 2) == Decimal("10.00")
    # never more units than the line shipped, whatever is asked
    assert refund_of_line(Decimal("10.00"), 3, 2, 5) == Decimal("3.33")
    assert refund_of_line(Decimal("10.00"), 3, 3, 1) == Decimal("0.00")


def test_units_beyond_the_authorization_sit_on_an_unauthorized_line_never_refunded() -> None:
    lines = authorize([("1", "A", 1, "r")], SHIPPED)
    extra = unauthorized_line("A", "DC")
    extra.received_at["ST"] = 2
    lines[0].received_at["ST"] = 1
    lines.append(extra)
    assert all_received(lines) and pending_units(lines) == 3
    moves, excess = allocate_inspection(lines, [("A", 3, Disposition.RESTOCK)])
    assert [(m.line_id, m.quantity) for m in moves] == [("1", 1), ("unauthorized:A", 2)] and excess == {}
    apply_moves(lines, moves)
    assert pending_units(lines) == 0 and extra.refund_amount == Decimal("0.00")
    assert refund_amount(lines) == Decimal("10.00")


def test_receiving_is_complete_when_every_authorized_unit_came_back() -> None:
    lines = authorize([("1", "A", 2, "r"), ("2", "B", 1, "r")], SHIPPED)
    lines[0].received_at["ST"] = 2
    assert not all_received(lines)
    lines[1].received_at["DC"] = 1
    assert all_received(lines)


def test_a_return_receipt_posts_in_the_selling_entity_with_intercompany_to_the_store_that_took_it() -> None:
    entity_of = {"DC": "LE-A", "FAR": "LE-B", "ST": "LE-A"}
    far = MovementLine(sku="A", location_id="FAR", quantity=2, sale_location_id="DC")
    assert movement_postings(MovementKind.RETURN_RECEIPT, far, Decimal("2.50"), entity_of) == [
        ("LE-A", [JournalLine(account=Account.INTERCOMPANY_RECEIVABLE, debit=Decimal("5.00")),
                  JournalLine(account=Account.COGS, credit=Decimal("5.00"))]),
        ("LE-B", [JournalLine(account=Account.RETURNS_PENDING_INSPECTION, debit=Decimal("5.00")),
                  JournalLine(account=Account.INTERCOMPANY_PAYABLE, credit=Decimal("5.00"))]),
    ]
    same = MovementLine(sku="A", location_id="ST", quantity=2, sale_location_id="DC")
    assert movement_postings(MovementKind.RETURN_RECEIPT, same, Decimal("2.50"), entity_of) == [
        ("LE-A", [JournalLine(account=Account.RETURNS_PENDING_INSPECTION, debit=Decimal("5.00")),
                  JournalLine(account=Account.COGS, credit=Decimal("5.00"))])]
    with pytest.raises(DomainError):  # only a return receipt names who sold the units
        deltas(MovementKind.RECEIPT, MovementLine(sku="A", location_id="ST", quantity=1, sale_location_id="DC"))

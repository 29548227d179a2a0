"""The return's pure rules: authorization against shipped lines, receipt and inspection allocation, refund."""
from decimal import Decimal

from domain.events import Disposition
from domain.returns import (
    Shipped,
    allocate_inspection,
    allocate_receipt,
    apply_moves,
    authorize,
    details_table,
    refund_amount,
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

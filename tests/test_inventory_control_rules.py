"""The pure rules of receive-to-stock, count-to-adjust and vendor return (domain/receiving.py, counts.py,
vendor_returns.py), the routing of their events and the journal postings they ask for. No server."""
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from domain.counts import CountLine, LineStatus, evaluate, on_hand, plan_adjustment, plan_count
from domain.events import (
    SOURCE_EVENTS,
    CountedQuantity,
    CountSubmitted,
    Event,
    EventType,
    PurchaseOrderLine,
    ReceiptLine,
    SkuQuantity,
)
from domain.items import Item
from domain.journal import FinancialEvent, JournalEntry, financial_lines
from domain.receiving import PoLine, over_tolerance, plan_order, plan_receipt, price_variance
from domain.routing import route
from domain.vendor_returns import RtvLine, plan_credit, plan_lines, plan_shipment

pytestmark = pytest.mark.unit

MUG = Item(sku="MUG", name="mug", barcode="1", units={"EA": 1, "CASE": 12}, unit_cost=Decimal("2.20"),
           price=Decimal("14"))
LAMP = Item(sku="LAMP", name="lamp", barcode="2", unit_cost=Decimal("27.50"), price=Decimal("79"))
EURO = Item(sku="EURO", name="import", barcode="3", unit_cost=Decimal("5"), price=Decimal("9"), currency="EUR")
ITEMS = {i.sku: i for i in (MUG, LAMP, EURO)}


def po_line(line_id: str, sku: str, quantity: int, uom: str, cost: str) -> PurchaseOrderLine:
    return PurchaseOrderLine(line_id=line_id, sku=sku, quantity=quantity, uom=uom, unit_cost=Decimal(cost))


def test_a_po_is_converted_to_ea_at_cost_per_ea_and_bad_lines_are_refused_with_their_reason() -> None:
    lines, refused = plan_order([po_line("1", "MUG", 2, "CASE", "27.00"), po_line("1", "LAMP", 1, "EA", "27"),
                                 po_line("2", "NOPE", 1, "EA", "1"), po_line("3", "MUG", 1, "PALLET", "9"),
                                 po_line("4", "EURO", 1, "EA", "5")], ITEMS, "USD")
    assert [(ln.line_id, ln.ordered, ln.unit_cost, ln.standard_cost) for ln in lines] == [
        ("1", 24, Decimal("2.25"), Decimal("2.20"))]
    assert [(r.line_id, r.reason.split(":")[0].split(" ")[0]) for r in refused] == [
        ("1", "line"), ("2", "unknown"), ("3", "unit"), ("4", "EURO")]


def test_a_receipt_sorts_lines_on_the_po_not_on_it_and_unknown_to_the_item_master() -> None:
    lines = [PoLine(line_id="1", sku="MUG", as_ordered="24 EA", ordered=24, unit_cost=Decimal("2.25"),
                    standard_cost=Decimal("2.20"))]
    plan = plan_receipt(lines, [ReceiptLine(line_id="1", sku="MUG", quantity=10),
                                ReceiptLine(line_id="1", sku="MUG", quantity=2),
                                ReceiptLine(line_id="1", sku="LAMP", quantity=1),  # right line, wrong SKU
                                ReceiptLine(line_id="5", sku="LAMP", quantity=3),
                                ReceiptLine(line_id="6", sku="NOPE", quantity=4)], {"MUG", "LAMP"})
    assert plan.on_po == {"1": 12}
    assert plan.unknown == {"1:LAMP": ("LAMP", 1), "5": ("LAMP", 3)}
    assert [r.sku for r in plan.refused] == ["NOPE"]
    assert price_variance(lines, plan.on_po) == Decimal("0.60")


def test_over_receipt_tolerance_is_exclusive_of_its_bound() -> None:
    line = PoLine(line_id="1", sku="MUG", as_ordered="20 EA", ordered=20, unit_cost=Decimal(1),
                  standard_cost=Decimal(1), received=21)
    assert over_tolerance([line], Decimal("0.05")) == []  # exactly 5 % over: within
    line.received = 22
    assert over_tolerance([line], Decimal("0.05")) == [line]


def test_a_count_is_measured_on_the_shelf_buckets_against_both_tolerances() -> None:
    lines, refused = plan_count([CountedQuantity(sku="MUG", quantity=7), CountedQuantity(sku="MUG", quantity=1),
                                 CountedQuantity(sku="LAMP", quantity=4), CountedQuantity(sku="NOPE", quantity=0)],
                                ITEMS)
    assert [r.sku for r in refused] == ["NOPE"]
    ledger = {"MUG": {"available": 5, "reserved": 3, "picked": 2, "damaged": 9},  # damaged is not on the shelf
              "LAMP": {"available": 5}}
    assert on_hand(ledger["MUG"]) == 10
    evaluate(lines, ledger, 2, Decimal("25.00"))
    mug, lamp = lines
    assert (mug.variance, mug.within_tolerance) == (-2, True)  # 2 units, 4.40
    assert (lamp.variance, lamp.within_tolerance, lamp.status) == (-1, False, LineStatus.AWAITING_APPROVAL)  # 27.50


def test_a_loss_takes_at_most_what_is_available_now() -> None:
    loss = CountLine(sku="MUG", counted=3, on_hand_at_count=10, variance=-7)
    gain = CountLine(sku="LAMP", counted=9, on_hand_at_count=4, variance=5)
    assert plan_adjustment([loss, gain], {"MUG": 2}) == {"MUG": (-2, 5), "LAMP": (5, 0)}
    assert plan_adjustment([loss], {"MUG": 50}) == {"MUG": (-7, 0)}


def test_a_vendor_return_ships_what_vendor_return_holds_and_a_credit_clears_the_receivable() -> None:
    lines, refused, currency = plan_lines([SkuQuantity(sku="MUG", quantity=4), SkuQuantity(sku="MUG", quantity=2),
                                           SkuQuantity(sku="EURO", quantity=1)], ITEMS)
    assert currency == "USD" and [r.sku for r in refused] == ["EURO"]
    assert plan_shipment(lines, {"MUG": 5}) == {"MUG": (5, 1)}
    assert plan_shipment([RtvLine(sku="MUG", requested=3)], {}) == {"MUG": (0, 3)}
    assert plan_credit(Decimal("13.20"), Decimal("13.20")).model_dump() == {
        "settle": Decimal("13.20"), "short": Decimal(0), "over": Decimal(0)}
    assert plan_credit(Decimal("13.20"), Decimal("10")).model_dump() == {
        "settle": Decimal("10"), "short": Decimal("3.20"), "over": Decimal(0)}
    assert plan_credit(Decimal("13.20"), Decimal("14")).model_dump() == {
        "settle": Decimal("13.20"), "short": Decimal(0), "over": Decimal("0.80")}


@pytest.mark.parametrize("event", [FinancialEvent.PRICE_VARIANCE_UNFAVOURABLE,
                                   FinancialEvent.PRICE_VARIANCE_FAVOURABLE, FinancialEvent.VENDOR_CREDIT,
                                   FinancialEvent.VENDOR_CREDIT_SHORT, FinancialEvent.VENDOR_CREDIT_OVER])
def test_every_inventory_control_posting_balances(event: FinancialEvent) -> None:
    entry = JournalEntry(key="k", legal_entity="E", currency="USD", memo="m",  # refuses an unbalanced entry
                         lines=financial_lines(event, Decimal("1.5")))
    assert sum(line.debit for line in entry.lines) == sum(line.credit for line in entry.lines) == Decimal("1.5")


def test_the_six_events_route_to_their_processes_and_come_from_their_sources() -> None:
    at = datetime.now(UTC)
    data = {
        EventType.PURCHASE_ORDER_CREATED: {"po_id": "P1", "supplier_id": "S", "location_id": "L", "currency": "USD",
                                           "expected_at": at.isoformat(), "lines": [
                                               {"line_id": "1", "sku": "MUG", "quantity": 1, "unit_cost": "1"}]},
        EventType.PURCHASE_ORDER_RECEIVED: {"po_id": "P1", "receipt_id": "R", "location_id": "L",
                                            "lines": [{"line_id": "1", "sku": "MUG", "quantity": 1}]},
        EventType.PURCHASE_ORDER_CLOSED: {"po_id": "P1", "reason": "done"},
        EventType.COUNT_SUBMITTED: {"count_id": "C1", "location_id": "L", "counted_at": at.isoformat(),
                                    "lines": [{"sku": "MUG", "quantity": 0}]},
        EventType.VENDOR_RETURN_SHIPPED: {"rtv_id": "V1", "location_id": "L", "supplier_id": "S",
                                          "lines": [{"sku": "MUG", "quantity": 1}]},
        EventType.VENDOR_CREDIT_RECEIVED: {"rtv_id": "V1", "amount": "1.00", "currency": "USD"},
    }
    routes = {t: route(Event.parse("e", t, at, "x", d)) for t, d in data.items()}
    assert {t: (r.workflow_type, r.workflow_id, r.opens) for t, r in routes.items()} == {
        EventType.PURCHASE_ORDER_CREATED: ("ReceiveToStock", "po:P1", True),
        EventType.PURCHASE_ORDER_RECEIVED: ("ReceiveToStock", "po:P1", False),
        EventType.PURCHASE_ORDER_CLOSED: ("ReceiveToStock", "po:P1", False),
        EventType.COUNT_SUBMITTED: ("CountToAdjust", "count:C1", True),
        EventType.VENDOR_RETURN_SHIPPED: ("VendorReturn", "rtv:V1", True),
        EventType.VENDOR_CREDIT_RECEIVED: ("VendorReturn", "rtv:V1", False),
    }
    assert SOURCE_EVENTS["erp"] == {EventType.PURCHASE_ORDER_CREATED, EventType.PURCHASE_ORDER_CLOSED,
                                    EventType.VENDOR_CREDIT_RECEIVED}
    assert EventType.COUNT_SUBMITTED in SOURCE_EVENTS["pos"] and EventType.VENDOR_RETURN_SHIPPED in SOURCE_EVENTS["wms"]
    assert EventType.VENDOR_RETURN_SHIPPED not in SOURCE_EVENTS["pos"]


def test_a_count_moment_without_its_offset_is_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        CountSubmitted(count_id="C", location_id="L", counted_at=datetime(2026, 11, 24, 7, 0),
                       lines=[CountedQuantity(sku="MUG", quantity=1)])

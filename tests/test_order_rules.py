"""The pure order rules: source choice, short-pick and dispatch arithmetic, the decision, prices per EA."""
from decimal import Decimal

from domain.order import (
    Decision,
    LineState,
    by_location,
    choose_sources,
    decide,
    details_table,
    pick_result,
    ship_quantity,
    unit_price_per_ea,
)


def test_pickup_takes_what_the_store_has() -> None:
    needs = {"1": ("A", 5), "2": ("B", 2), "3": ("C", 1)}
    available = {("A", "ST"): 3, ("B", "ST"): 9, ("A", "DC"): 100, ("C", "DC"): 5}
    assert choose_sources(needs, available, pickup_location="ST") == {"1": ("ST", 3), "2": ("ST", 2)}


def test_preferred_node_when_it_fills_everything() -> None:
    needs = {"1": ("A", 2), "2": ("B", 1)}
    available = {("A", "DC"): 50, ("B", "DC"): 50, ("A", "ST"): 2, ("B", "ST"): 1}
    assert choose_sources(needs, available, preferred="ST") == {"1": ("ST", 2), "2": ("ST", 1)}


def test_location_that_fills_most_when_preferred_cannot() -> None:
    needs = {"1": ("A", 2), "2": ("B", 1)}
    available = {("A", "ST"): 2, ("B", "ST"): 0, ("A", "DC"): 5, ("B", "DC"): 5}
    assert choose_sources(needs, available, preferred="ST") == {"1": ("DC", 2), "2": ("DC", 1)}


def test_lines_split_over_locations_and_short_lines_take_the_most() -> None:
    needs = {"1": ("A", 4), "2": ("B", 3), "3": ("C", 10)}
    available = {("A", "X"): 4, ("B", "Y"): 3, ("C", "X"): 2, ("C", "Y"): 6}
    plan = choose_sources(needs, available)
    assert plan == {"1": ("X", 4), "2": ("Y", 3), "3": ("Y", 6)}
    assert by_location(plan) == {"X": {"1": 4}, "Y": {"2": 3, "3": 6}}


def test_two_lines_of_one_sku_share_the_stock() -> None:
    needs = {"1": ("A", 3), "2": ("A", 3)}
    plan = choose_sources(needs, {("A", "X"): 4})
    assert plan == {"1": ("X", 3), "2": ("X", 1)}


def test_nothing_anywhere_leaves_the_line_out() -> None:
    assert choose_sources({"1": ("A", 1)}, {("A", "X"): 0}) == {}


def test_ties_prefer_the_preferred_node_then_the_first_location() -> None:
    needs = {"1": ("A", 2), "2": ("B", 2)}
    available = {("A", "P"): 2, ("B", "P"): 1, ("A", "Q"): 2, ("A", "B0"): 2}
    # nobody fills all; P, Q, B0 each fill line 1 in full: P (preferred) wins; line 2 then takes P's last unit
    assert choose_sources(needs, available, preferred="P") == {"1": ("P", 2), "2": ("P", 1)}
    assert choose_sources(needs, {("A", "Q"): 2, ("A", "B0"): 2}) == {"1": ("B0", 2)}


def test_pick_and_ship_arithmetic() -> None:
    assert pick_result(5, 5) == (5, 0)
    assert pick_result(5, 3) == (3, 2)
    assert pick_result(5, 0) == (0, 5)
    assert pick_result(5, 9) == (5, 0)  # never more than reserved
    assert ship_quantity(4, 3) == 3 and ship_quantity(4, 7) == 4 and ship_quantity(0, 1) == 0


def test_unit_price_per_each() -> None:
    assert unit_price_per_ea(Decimal("14.00"), 1) == Decimal("14.00")
    assert unit_price_per_ea(Decimal("120.00"), 12) == Decimal("10.0000")


def _line(line_id: str, ordered: int, reserved: int, reason: str | None = None) -> LineState:
    return LineState(line_id=line_id, sku="A", uom="EA", ordered_uom_quantity=ordered, ordered=ordered,
                     reserved=reserved, location_id="X" if reserved else None, reason=reason)


def test_decision() -> None:
    assert decide("w", [_line("1", 2, 2), _line("2", 1, 1)]).decision is Decision.RESERVED
    partial = decide("w", [_line("1", 2, 2), _line("2", 1, 0, "unknown SKU 'Z'")])
    assert partial.decision is Decision.PARTIALLY_RESERVED
    assert [(ln.reserved_quantity, ln.location_id, ln.reason) for ln in partial.lines] == [
        (2, "X", None), (0, None, "unknown SKU 'Z'")]
    assert decide("w", [_line("1", 2, 1, "only 1 of 2 EA available")]).decision is Decision.PARTIALLY_RESERVED
    assert decide("w", [_line("1", 2, 0, "insufficient stock")]).decision is Decision.REJECTED


def test_line_quantities_add_up_and_table() -> None:
    ln = LineState(line_id="1", sku="A", uom="CASE", ordered_uom_quantity=1, ordered=12, location_id="X",
                   reserved=2, picked=3, shipped=4, released=1)
    assert ln.unreserved == 2 and ln.open_units == 5
    headers, rows = details_table([ln])
    assert headers[0] == "line" and rows == [["1", "A", "X", 12, 2, 3, 4, 3, ""]]


# --- release 2 ---------------------------------------------------------------------------------------------------
def test_a_line_charged_over_split_shipments_adds_up_to_its_total() -> None:
    from domain.order import charged_amount

    line = LineState(line_id="1", sku="S", uom="PACK", ordered_uom_quantity=1, ordered=3,
                     unit_price=unit_price_per_ea(Decimal("10.00"), 3), amount=Decimal("10.00"))
    parts = []
    for _ in range(3):  # unit by unit: 3.33 + 3.34 + 3.33, never 9.99 or 10.02
        parts.append(charged_amount(line, 1))
        line.shipped += 1
    assert parts == [Decimal("3.33"), Decimal("3.34"), Decimal("3.33")] and sum(parts) == Decimal("10.00")
    line.shipped = 0
    first = charged_amount(line, 2)
    line.shipped = 2
    assert first + charged_amount(line, 1) == Decimal("10.00")
    # a 1.0 line (no amount): unit price x quantity, as before
    old = line.model_copy(update={"amount": None, "shipped": 0})
    assert charged_amount(old, 3) == Decimal("10.00") and charged_amount(old, 1) == Decimal("3.33")


def test_currency_of_the_line_against_the_item_master() -> None:
    from domain.order import currency_refusal

    assert currency_refusal("S", "USD", "USD") is None
    assert currency_refusal("S", "EUR", "USD") == "item S is priced in EUR, the order is in USD"


def _order(lines: list[dict], authorized: str) -> dict:
    return {"order_id": "o1", "channel": "web", "currency": "USD", "lines": lines,
            "fulfillment": {"mode": "ship"}, "payment": {"payment_id": "p1", "authorized_amount": authorized}}


def test_placement_checks_the_body_shows() -> None:
    import pytest
    from pydantic import ValidationError

    from domain.events import OrderPlaced

    one = {"line_id": "1", "sku": "S", "quantity": 2, "unit_price": "5.00"}
    assert OrderPlaced.model_validate(_order([one], "10.00")).total == Decimal("10.00")  # equal is fine
    with pytest.raises(ValidationError) as dup:
        OrderPlaced.model_validate(_order([one, {**one, "sku": "T"}], "100.00"))
    assert [e["loc"] for e in dup.value.errors()] == [("lines",)]
    assert "line_id '1' appears more than once" in dup.value.errors()[0]["msg"]
    with pytest.raises(ValidationError) as over:
        OrderPlaced.model_validate(_order([{**one, "unit_price": "5.01"}], "10.00"))
    assert [e["loc"] for e in over.value.errors()] == [("payment",)]
    assert "order total 10.02" in over.value.errors()[0]["msg"] and "10.00" in over.value.errors()[0]["msg"]


def test_shopify_discounts_keep_the_order_within_its_authorization() -> None:
    from domain.events import OrderPlaced
    from starters.shopify import ShopifyOrder, to_order_placed

    order = ShopifyOrder.model_validate({
        "id": 7, "currency": "usd", "total_price": "45.00",  # 2 x 19.00 + 14.00 - 7.00 discount
        "line_items": [{"id": 1, "sku": "A", "quantity": 2, "price": "19.00",
                        "discount_allocations": [{"amount": "5.00"}]},
                       {"id": 2, "sku": "B", "quantity": 1, "price": "14.00", "total_discount": "2.00"}]})
    placed = OrderPlaced.model_validate(to_order_placed(order))
    assert [ln.unit_price for ln in placed.lines] == [Decimal("16.50"), Decimal("12.00")]
    assert placed.total == Decimal("45.00") <= placed.payment.authorized_amount

"""The pure settlement rules: shipment value, matching settlements to captured shipments, duplicates, mismatch."""
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from domain.events import PricedLine
from domain.settlement import (
    SettlementRecord,
    ShipmentRecord,
    ShipmentSettlement,
    all_settled,
    allocate,
    distribute,
    is_duplicate,
    match_subset,
    mismatch_at_close,
    shipment_value,
    totals,
)

T0 = datetime(2026, 11, 23, tzinfo=UTC)
D = Decimal


def ship(shipment_id: str, captured: str, location: str = "DC") -> ShipmentRecord:
    value = D(captured)
    return ShipmentRecord(shipment_id=shipment_id, location_id=location, currency="USD", payment_id="pay-1",
                          lines=[PricedLine(line_id="l1", sku="S", quantity=1, unit_price=value)], value=value,
                          shipped_at=T0, captured=value)


def settle(event_id: str, amount: str, minutes: int = 0, payment_id: str = "pay-1") -> SettlementRecord:
    return SettlementRecord(event_id=event_id, payment_id=payment_id, amount=D(amount), currency="USD",
                            settled_at=T0 + timedelta(minutes=minutes), received_at=T0)


def test_shipment_value_is_quantity_times_price_rounded() -> None:
    lines = [PricedLine(line_id="a", sku="S", quantity=3, unit_price=D("9.99")),
             PricedLine(line_id="b", sku="T", quantity=2, unit_price=D("0.005"))]
    assert shipment_value(lines) == D("29.98")  # 29.97 + 0.01 (0.010 half-even stays 0.01)


def test_once_for_all_matches_every_open_shipment() -> None:
    shipments = [ship("s1", "10.00"), ship("s2", "5.00")]
    assert match_subset(D("15.00"), shipments, D(0)) == ["s1", "s2"]


def test_per_shipment_matches_the_one_it_pays_for_in_any_order() -> None:
    shipments = [ship("s1", "10.00"), ship("s2", "5.00"), ship("s3", "7.00")]
    assert match_subset(D("5.00"), shipments, D(0)) == ["s2"]
    assert match_subset(D("12.00"), shipments, D(0)) == ["s2", "s3"]
    assert match_subset(D("11.00"), shipments, D(0)) is None


def test_tolerance_accepts_small_differences_but_prefers_exact() -> None:
    shipments = [ship("s1", "10.00"), ship("s2", "10.01")]
    assert match_subset(D("10.01"), shipments, D("0.02")) == ["s2"]
    assert match_subset(D("9.99"), shipments, D("0.02")) == ["s1"]
    assert match_subset(D("9.99"), shipments, D(0)) is None
    assert match_subset(D("20.00"), shipments, D("0.01")) == ["s1", "s2"]


def test_allocate_split_settlements_and_hold_the_unmatched() -> None:
    shipments = [ship("s1", "10.00"), ship("s2", "5.00")]
    got = allocate(shipments, [settle("e1", "5.00"), settle("e2", "3.00", 1)], D(0))
    assert [(a.settlement_ids, a.shipment_ids) for a in got] == [(["e1"], ["s2"])]
    # two partial settlements of one shipment (split tender) clear it together
    got = allocate([ship("s1", "10.00")], [settle("e1", "6.00"), settle("e2", "4.00", 1)], D(0))
    assert [(a.settlement_ids, a.shipment_ids) for a in got] == [(["e1", "e2"], ["s1"])]


def test_settled_shipments_are_not_matched_again() -> None:
    s1, s2 = ship("s1", "10.00"), ship("s2", "10.00")
    s1.settlement = ShipmentSettlement.SETTLED
    assert [a.shipment_ids for a in allocate([s1, s2], [settle("e2", "10.00", 5)], D(0))] == [["s2"]]
    s2.settlement = ShipmentSettlement.NOT_CAPTURED
    assert allocate([s1, s2], [settle("e3", "10.00", 9)], D(0)) == []


def test_duplicate_is_same_payment_amount_and_time_under_a_new_id() -> None:
    first = settle("e1", "10.00")
    assert is_duplicate(settle("e2", "10.00"), [first]) == "e1"
    assert is_duplicate(settle("e2", "10.00", minutes=5), [first]) is None  # a second real settlement
    assert is_duplicate(settle("e2", "10.01"), [first]) is None
    assert is_duplicate(settle("e2", "10.00", payment_id="pay-2"), [first]) is None


def test_mismatch_at_close_under_and_over() -> None:
    shipments = [ship("s1", "10.00")]
    under = mismatch_at_close(shipments, [settle("e1", "9.50")])
    assert under is not None and (under.expected, under.settled, under.difference) == (D("10.00"), D("9.50"),
                                                                                        D("-0.50"))
    assert under.direction == "under" and under.shipment_ids == ["s1"]
    shipments[0].settlement = ShipmentSettlement.SETTLED
    over = mismatch_at_close(shipments, [settle("e2", "2.00")])
    assert over is not None and over.expected == 0 and over.direction == "over" and over.shipment_ids == []
    assert mismatch_at_close(shipments, []) is None


def test_distribute_clears_each_shipment_and_puts_the_rest_on_the_last() -> None:
    a, b = ship("a", "10.00", "DC"), ship("b", "5.00", "FAR")
    assert [(s.shipment_id, x) for s, x in distribute(D("15.00"), [a, b])] == [("a", D("10.00")), ("b", D("5.00"))]
    assert [x for _, x in distribute(D("12.00"), [a, b])] == [D("10.00"), D("2.00")]
    assert [x for _, x in distribute(D("8.00"), [a, b])] == [D("8.00"), D("0.00")]
    assert [x for _, x in distribute(D("16.00"), [a, b])] == [D("10.00"), D("6.00")]
    assert distribute(D("1.00"), []) == []


def test_totals_and_all_settled() -> None:
    s1, s2 = ship("s1", "10.00"), ship("s2", "5.00")
    e1, dup = settle("e1", "10.00"), settle("e9", "10.00")
    e1.allocated_to = ["s1"]
    dup.duplicate_of = "e1"
    s1.settlement = ShipmentSettlement.SETTLED
    t = totals([s1, s2], [e1, dup])
    assert (t.shipped, t.captured, t.settled, t.outstanding, t.held) == (D(15), D(15), D(10), D(5), D(0))
    assert not all_settled([s1, s2], [e1, dup])
    s2.settlement = ShipmentSettlement.SETTLED
    assert all_settled([s1, s2], [e1, dup])
    assert not all_settled([s1, s2], [e1, dup, settle("e3", "1.00", 3)])


# --- release 2 ---------------------------------------------------------------------------------------------------
def test_a_settlement_names_its_payment_and_currency() -> None:
    from domain.settlement import refusal

    assert refusal("pay-1", "USD", "pay-1", "USD") is None
    assert "pay-2" in (refusal("pay-2", "USD", "pay-1", "USD") or "")
    assert "EUR" in (refusal("pay-1", "EUR", "pay-1", "USD") or "")
    refused = settle("x", "10.00")
    refused.refused = "another payment"
    assert not refused.held and totals([], [refused]).settled == 0  # never matched, never counted


def test_shipment_value_takes_the_charged_line_amounts_when_present() -> None:
    thirds = [PricedLine(line_id="a", sku="S", quantity=1, unit_price=D("3.3333"), amount=D(a))
              for a in ("3.33", "3.34", "3.33")]
    assert [shipment_value([line]) for line in thirds] == [D("3.33"), D("3.34"), D("3.33")]
    assert sum(shipment_value([line]) for line in thirds) == D("10.00")
    # without amounts (a release 1.0 order): quantity x unit price, rounded per shipment (drifts: 9.99)
    assert sum(shipment_value([line.model_copy(update={"amount": None})]) for line in thirds) == D("9.99")


def test_matched_settlement_postings_clear_each_receivable_exactly() -> None:
    from domain.settlement import settlement_postings

    shipments = [ship("s1", "33.33", "DC"), ship("s2", "66.67", "FAR"), ship("s3", "0.01", "DC")]
    postings = settlement_postings(D("99.98"), D("2.90"), shipments, matched=True)  # 0.03 short, fee 2.90
    assert [p.receivable for p in postings] == [D("33.33"), D("66.67"), D("0.01")]
    assert sum(p.fee for p in postings) == D("2.90") and sum(p.difference for p in postings) == D("-0.03")
    assert sum(p.gross for p in postings) == D("99.98")
    for p in postings:  # every part is whole cents
        assert p.fee == p.fee.quantize(D("0.01")) and p.difference == p.difference.quantize(D("0.01"))


def test_mismatched_settlement_postings_leave_the_difference_on_the_receivable() -> None:
    from domain.settlement import settlement_postings

    shipments = [ship("s1", "30.00"), ship("s2", "70.00")]
    under = settlement_postings(D("90.00"), D("0.90"), shipments, matched=False)
    assert [(p.receivable, p.difference) for p in under] == [(D("30.00"), 0), (D("60.00"), 0)]
    assert sum(p.fee for p in under) == D("0.90")
    assert settlement_postings(D("1.00"), D(0), [], matched=True) == []


def test_settlement_journal_lines_balance_with_fee_and_difference() -> None:
    from domain.journal import Account, FinancialEvent, JournalEntry, financial_lines

    for difference in (D("0.03"), D("-0.03"), D(0)):
        lines = financial_lines(FinancialEvent.SETTLEMENT, D("50.00"), fee=D("1.50"), difference=difference)
        JournalEntry(key="k", legal_entity="LE", currency="USD", memo="m", lines=lines)  # balanced or raises
        by = {ln.account: ln.debit - ln.credit for ln in lines}
        assert by[Account.RECEIVABLE] == D("-50.00") and by[Account.PROCESSOR_FEES] == D("1.50")
        assert by[Account.CASH_CLEARING] == D("50.00") + difference - D("1.50")
        assert by.get(Account.SETTLEMENT_DIFFERENCES, D(0)) == -difference
    assert len(financial_lines(FinancialEvent.SETTLEMENT, D("5.00"))) == 2  # the 1.0 entry, unchanged

"""The pure rules of a transfer: conversion and line refusals, reservation under the partial policy, shipment,
receipts adding up, and the variance."""
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.events import SkuQuantityUom
from domain.items import Item
from domain.process import PartialPolicy
from domain.transfer import (
    TransferLine,
    TransferStage,
    all_reserved_shipped,
    apply_notice,
    apply_receipt,
    apply_shipping_final,
    cancel_refusal,
    describe_variance,
    outstanding,
    plan_extra_reserve,
    plan_notice,
    plan_receipt,
    plan_receipt_v2,
    plan_request,
    plan_reservation,
    plan_shipment,
    plan_shipping_final,
    variance,
)

MUG = Item(sku="MUG", name="mug", barcode="1", units={"EA": 1, "CASE": 12}, unit_cost=Decimal("2.20"),
           price=Decimal("14.00"))
TEE = Item(sku="TEE", name="tee", barcode="2", units={"EA": 1, "PACK": 6}, unit_cost=Decimal("6.40"),
           price=Decimal("19.00"))
ITEMS = {"MUG": MUG, "TEE": TEE}


def req(sku: str, quantity: int, uom: str = "EA") -> SkuQuantityUom:
    return SkuQuantityUom(sku=sku, quantity=quantity, uom=uom)


def test_request_converts_to_ea_merges_skus_and_refuses_unknowns_line_by_line() -> None:
    lines, refused = plan_request([req("MUG", 2, "CASE"), req("MUG", 3), req("TEE", 1, "CASE"), req("NOPE", 4)],
                                  ITEMS)
    assert [(line.sku, line.requested, line.as_requested) for line in lines] == [("MUG", 27, "2 CASE + 3 EA")]
    assert [(r.sku, r.uom) for r in refused] == [("TEE", "CASE"), ("NOPE", "EA")]
    assert "unit 'CASE' is not defined for TEE" in refused[0].reason
    assert refused[1].reason == "unknown SKU NOPE"


def test_reservation_goes_ahead_with_the_rest_or_refuses_whole() -> None:
    lines = [TransferLine(sku="MUG", as_requested="10 EA", requested=10),
             TransferLine(sku="TEE", as_requested="4 EA", requested=4)]
    accept = plan_reservation(lines, {"MUG": 6, "TEE": 9}, PartialPolicy.ACCEPT, "DC")
    assert accept.reserve == {"MUG": 6, "TEE": 4} and accept.refuse_whole is None
    assert accept.shortfalls == {"MUG": "DC has 6 of MUG available, 10 requested"}
    reject = plan_reservation(lines, {"MUG": 6, "TEE": 9}, PartialPolicy.REJECT, "DC")
    assert reject.reserve == {} and "partial transfers are refused" in (reject.refuse_whole or "")
    nothing = plan_reservation(lines, {}, PartialPolicy.ACCEPT, "DC")
    assert nothing.refuse_whole == "nothing of the request is available at DC"
    assert plan_reservation([], {}, PartialPolicy.ACCEPT, "DC").refuse_whole


def test_shipment_ships_at_most_what_is_reserved_and_releases_the_rest() -> None:
    lines = [TransferLine(sku="MUG", as_requested="", requested=10, reserved=10),
             TransferLine(sku="TEE", as_requested="", requested=4, reserved=4)]
    plan = plan_shipment(lines, {"MUG": 7, "TEE": 6, "ODD": 1})
    assert plan.ship == {"MUG": 7, "TEE": 4}
    assert plan.release == {"MUG": 3}
    assert plan.beyond_reserved == {"TEE": 2, "ODD": 1}


def test_receipts_add_up_overage_and_final_shortage() -> None:
    line = TransferLine(sku="MUG", as_requested="", requested=10, reserved=10, shipped=10)
    first = plan_receipt([line], {"MUG": 4})
    assert first.into_available == {"MUG": 4} and first.overage == {}
    line.received = 4
    assert outstanding([line]) == {"MUG": 6}
    second = plan_receipt([line], {"MUG": 8})
    assert second.into_available == {"MUG": 6} and second.overage == {"MUG": 2}
    line.received, line.over = 12, 2
    assert outstanding([line]) == {}
    assert [v.model_dump() for v in variance([line])] == [
        {"sku": "MUG", "shipped": 10, "received": 12, "short": 0, "over": 2}]
    short = TransferLine(sku="TEE", as_requested="", requested=5, reserved=5, shipped=5, received=3)
    assert outstanding([short]) == {"TEE": 2}
    short.short = 2
    assert outstanding([short]) == {}
    summary, details = describe_variance(variance([line, short]))
    assert summary == ("receipt differs from shipment: 2 short (written off as shrink in transit), "
                       "2 over (taken into available)")
    assert details["TEE"] == "shipped 5, received 3, short 2, over 0" and details["over_units"] == "2"


def test_cancel_is_refused_once_shipped_or_before_the_request() -> None:
    assert cancel_refusal(TransferStage.REQUESTED, False, "ST") is None
    assert "already shipped" in (cancel_refusal(TransferStage.REQUESTED, True, "ST") or "")
    assert "in transit to ST" in (cancel_refusal(TransferStage.IN_TRANSIT, False, "ST") or "")
    assert "not been requested" in (cancel_refusal(TransferStage.AWAITING_REQUEST, False, None) or "")
    assert cancel_refusal(TransferStage.CANCELLED, False, "ST") == "the transfer is already cancelled"


def test_the_receipt_grace_comes_from_settings_into_the_transfer_policy() -> None:
    from datetime import timedelta

    from config.settings import Settings

    policy = Settings(transfer_receipt_grace=timedelta(hours=2), partial_transfers=PartialPolicy.REJECT
                      ).process_policy("transfer", None)
    assert policy.receipt_grace == timedelta(hours=2) and policy.partial is PartialPolicy.REJECT
    assert Settings().process_policy("transfer", None).receipt_grace == timedelta(hours=24)


# --- release 2: several trucks and receipts, in any order ---------------------------------------------------
def reserved_line(sku: str, reserved: int, requested: int | None = None) -> TransferLine:
    return TransferLine(sku=sku, as_requested=f"{reserved} EA", requested=requested or reserved, reserved=reserved)


class Network:
    """The ledger buckets a transfer touches, moved exactly as the Transfer workflow moves them on release 2
    (workflows/transfer.py `_ship_and_receive`), driven by the pure rules."""

    def __init__(self, lines: list[TransferLine], free: int = 5) -> None:
        self.lines = lines
        self.src = {line.sku: {"available": free, "reserved": line.reserved, "picked": 0} for line in lines}
        self.dst = {line.sku: {"available": 0, "in_transit": 0} for line in lines}
        self.start = self.units()
        self.overage = {line.sku: 0 for line in lines}
        self.shrink = {line.sku: 0 for line in lines}
        self.shipping_final = False

    def units(self) -> dict[str, int]:
        return {sku: sum(self.src[sku].values()) + sum(self.dst[sku].values()) for sku in self.src}

    def notice(self, notified: dict[str, int], complete: bool = False) -> None:
        free = {sku: self.src[sku]["available"] for sku in self.src}
        for sku, n in plan_extra_reserve(self.lines, notified, free).items():  # RESERVE
            self.src[sku]["available"] -= n
            self.src[sku]["reserved"] += n
            self.lines_by_sku()[sku].reserved += n
        plan = plan_notice(self.lines, notified)
        for sku, n in plan.ship.items():
            self.src[sku]["reserved"] -= n  # PICK
            self.src[sku]["picked"] += n
            self.src[sku]["picked"] -= n  # TRANSFER_SHIP
            self.dst[sku]["in_transit"] += n
        for sku, n in plan.match.items():  # TRANSFER_RECEIPT of units a receipt already counted
            self.dst[sku]["in_transit"] -= n
            self.dst[sku]["available"] += n
        for sku, n in plan.explained_overage.items():  # ADJUST in_transit -n: an earlier overage undone
            self.dst[sku]["in_transit"] -= n
            self.overage[sku] -= n
        apply_notice(self.lines, plan)
        if not self.shipping_final and (complete or all_reserved_shipped(self.lines)):
            self.final_shipping()

    def final_shipping(self) -> None:
        plan = plan_shipping_final(self.lines)
        for sku, n in plan.release.items():
            self.src[sku]["reserved"] -= n
            self.src[sku]["available"] += n
        for sku, n in plan.overage.items():
            self.dst[sku]["available"] += n
            self.overage[sku] += n
        apply_shipping_final(self.lines, plan)
        self.shipping_final = True

    def receipt(self, counted: dict[str, int]) -> None:
        plan = plan_receipt_v2(self.lines, counted, self.shipping_final)
        for sku, n in plan.into_available.items():
            self.dst[sku]["in_transit"] -= n
            self.dst[sku]["available"] += n
        for sku, n in plan.overage.items():
            self.dst[sku]["available"] += n
            self.overage[sku] += n
        apply_receipt(self.lines, counted, plan)

    def close(self) -> None:
        """Receiving final: the grace passed; what is still in transit is written off."""
        if not self.shipping_final:
            self.final_shipping()
        for sku, n in outstanding(self.lines).items():
            self.dst[sku]["in_transit"] -= n
            self.shrink[sku] += n
            self.lines_by_sku()[sku].short += n

    def lines_by_sku(self) -> dict[str, TransferLine]:
        return {line.sku: line for line in self.lines}

    def check(self) -> None:
        now = self.units()
        for sku in self.src:
            assert now[sku] == self.start[sku] + self.overage[sku] - self.shrink[sku], sku  # network units conserved
            assert min(self.src[sku].values()) >= 0 and min(self.dst[sku].values()) >= 0
            line = self.lines_by_sku()[sku]
            assert self.dst[sku]["in_transit"] == line.in_transit  # the ledger and the state agree
            assert self.src[sku]["reserved"] == line.unshipped
            assert 0 <= line.held <= line.unshipped
            assert line.held == 0 or line.in_transit == 0
            assert line.over == self.overage[sku]


def test_two_trucks_then_one_receipt_matches_everything() -> None:
    net = Network([reserved_line("MUG", 10)])
    net.notice({"MUG": 6})
    assert net.lines[0].unshipped == 4 and not net.shipping_final  # the rest stays reserved
    net.notice({"MUG": 4})
    assert net.shipping_final  # nothing left reserved
    net.receipt({"MUG": 10})
    net.check()
    assert outstanding(net.lines) == {} and net.overage == {"MUG": 0} and net.dst["MUG"]["available"] == 10


def test_a_receipt_before_the_second_notice_is_held_then_matched() -> None:
    net = Network([reserved_line("MUG", 10)])
    net.notice({"MUG": 6})
    plan = plan_receipt_v2(net.lines, {"MUG": 10}, shipping_final=False)
    assert (plan.into_available, plan.held, plan.overage) == ({"MUG": 6}, {"MUG": 4}, {})
    net.receipt({"MUG": 10})
    net.check()
    assert net.lines[0].held == 4 and net.dst["MUG"]["available"] == 6
    late = plan_notice(net.lines, {"MUG": 4})
    assert late.ship == {"MUG": 4} and late.match == {"MUG": 4}
    net.notice({"MUG": 4}, complete=True)
    net.check()
    assert net.lines[0].held == 0 and net.dst["MUG"] == {"available": 10, "in_transit": 0}
    assert net.overage == {"MUG": 0}


def test_receipts_before_any_notice_are_held_up_to_the_reservation_the_rest_is_over_at_once() -> None:
    net = Network([reserved_line("MUG", 10)])
    plan = plan_receipt_v2(net.lines, {"MUG": 12}, shipping_final=False)
    assert (plan.into_available, plan.held, plan.overage) == ({}, {"MUG": 10}, {"MUG": 2})
    net.receipt({"MUG": 12})
    net.notice({"MUG": 10})
    net.check()
    assert net.overage == {"MUG": 2} and net.dst["MUG"]["available"] == 12 and net.src["MUG"]["reserved"] == 0


def test_shipping_final_releases_the_unshipped_rest_and_turns_what_is_held_into_overage() -> None:
    net = Network([reserved_line("MUG", 10), reserved_line("TEE", 4)])
    net.notice({"MUG": 6})
    net.receipt({"MUG": 8, "TEE": 1})
    assert [line.held for line in net.lines] == [2, 1]
    final = plan_shipping_final(net.lines)
    assert final.release == {"MUG": 4, "TEE": 4} and final.overage == {"MUG": 2, "TEE": 1}
    net.final_shipping()  # the ship grace passed
    net.check()
    assert net.src["MUG"] == {"available": 9, "reserved": 0, "picked": 0}
    assert net.overage == {"MUG": 2, "TEE": 1}
    assert plan_receipt_v2(net.lines, {"MUG": 1}, shipping_final=True).overage == {"MUG": 1}  # nothing held now


def test_a_notice_beyond_what_is_still_reserved_ships_only_the_reservation() -> None:
    lines = [reserved_line("MUG", 5)]
    plan = plan_notice(lines, {"MUG": 7, "ODD": 2})
    assert plan.ship == {"MUG": 5} and plan.beyond_reserved == {"MUG": 2, "ODD": 2} and plan.match == {}


def test_the_ship_grace_comes_from_settings_into_the_transfer_policy() -> None:
    from datetime import timedelta

    from config.settings import Settings
    from domain.events import TransferShipped

    assert Settings(transfer_ship_grace=timedelta(hours=3)).process_policy("transfer", None).ship_grace == timedelta(
        hours=3)
    assert Settings().process_policy("transfer", None).ship_grace == timedelta(hours=24)
    assert TransferShipped.model_validate({"transfer_id": "T", "lines": [{"sku": "A", "quantity": 1}]}).complete is False


def test_a_notice_overtaken_by_the_complete_one_reserves_again_and_undoes_the_overage() -> None:
    """The `complete` notice arrives first (webhooks reorder): the rest is released; the earlier truck's receipt
    is an overage then; its notice, arriving last, reserves again what the source has free and undoes it."""
    net = Network([reserved_line("MUG", 10), reserved_line("TEE", 4)], free=5)
    net.notice({"MUG": 6, "TEE": 4}, complete=True)
    assert net.src["MUG"]["available"] == 9  # the rest released
    net.receipt({"MUG": 10})
    assert net.overage == {"MUG": 4, "TEE": 0}
    assert plan_extra_reserve(net.lines, {"MUG": 4}, {"MUG": 9}) == {"MUG": 4}
    assert plan_extra_reserve(net.lines, {"MUG": 6}, {"MUG": 9}) == {"MUG": 4}  # never beyond the request
    assert plan_extra_reserve(net.lines, {"MUG": 4}, {"MUG": 1}) == {"MUG": 1}  # nor what the source has
    plan = plan_notice(net.lines, {"MUG": 4})
    assert plan.ship == {} and plan.beyond_reserved == {"MUG": 4}  # before the extra reservation
    net.notice({"MUG": 4})
    net.check()
    assert net.overage == {"MUG": 0, "TEE": 0} and net.src["MUG"] == {"available": 5, "reserved": 0, "picked": 0}
    assert net.dst["MUG"] == {"available": 10, "in_transit": 0} and net.dst["TEE"]["in_transit"] == 4


SKUS = ["MUG", "TEE"]
step = st.one_of(
    st.tuples(st.just("notice"), st.dictionaries(st.sampled_from(SKUS), st.integers(1, 8), min_size=1),
              st.booleans()),
    st.tuples(st.just("receipt"), st.dictionaries(st.sampled_from(SKUS), st.integers(0, 8), min_size=1),
              st.just(False)),
    st.tuples(st.just("ship grace"), st.just({}), st.just(False)),
)


@settings(max_examples=300, deadline=None)
@given(reserved=st.fixed_dictionaries({sku: st.integers(1, 12) for sku in SKUS}),
       unreserved=st.fixed_dictionaries({sku: st.integers(0, 4) for sku in SKUS}),
       free=st.integers(0, 6), steps=st.lists(step, max_size=12))
def test_any_interleaving_of_notices_and_receipts_conserves_network_units(
        reserved: dict[str, int], unreserved: dict[str, int], free: int, steps: list) -> None:
    """Random notices (some saying `complete`), receipts and ship-grace expiries in any order, on a reservation
    that may be short of the request, then receiving is final. At every step the network holds the units it
    started with plus overage minus shrink, the ledger agrees with the state (in transit, still reserved), and no
    bucket is negative. At the end nothing is left reserved, held or in transit, and per SKU the overage is what
    was counted beyond what shipped and the shrink what shipped beyond what was counted, never both: no truck the
    ledger shipped ever ends as an overage."""
    net = Network([reserved_line(sku, q, q + unreserved[sku]) for sku, q in reserved.items()], free=free)
    for kind, quantities, complete in steps:
        if kind == "notice":
            net.notice(quantities, complete=complete)
        elif kind == "receipt":
            net.receipt(quantities)
        elif not net.shipping_final:
            net.final_shipping()
        net.check()
    net.close()
    net.check()
    for line in net.lines:
        sku = line.sku
        counted = sum(q.get(sku, 0) for kind, q, _ in steps if kind == "receipt")
        assert line.shipped <= line.requested
        assert line.unshipped == 0 and line.in_transit == 0 and line.held == 0
        assert net.overage[sku] == max(0, counted - line.shipped), (sku, counted, line.shipped)
        assert net.shrink[sku] == max(0, line.shipped - counted)
        assert net.dst[sku]["available"] == counted
        assert net.src[sku]["available"] + line.shipped == free + reserved[sku]

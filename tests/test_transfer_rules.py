"""The pure rules of a transfer: conversion and line refusals, reservation under the partial policy, shipment,
receipts adding up, and the variance."""
from decimal import Decimal

from domain.events import SkuQuantityUom
from domain.items import Item
from domain.process import PartialPolicy
from domain.transfer import (
    TransferLine,
    TransferStage,
    cancel_refusal,
    describe_variance,
    outstanding,
    plan_receipt,
    plan_request,
    plan_reservation,
    plan_shipment,
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

    from worker.settings import Settings

    policy = Settings(transfer_receipt_grace=timedelta(hours=2), partial_transfers=PartialPolicy.REJECT
                      ).process_policy("transfer", None)
    assert policy.receipt_grace == timedelta(hours=2) and policy.partial is PartialPolicy.REJECT
    assert Settings().process_policy("transfer", None).receipt_grace == timedelta(hours=24)

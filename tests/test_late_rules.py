"""What an event that arrives after its process has ended means (domain.late): pure rules."""
from datetime import UTC, datetime

from domain.events import EventType
from domain.inventory import Bucket, MovementKind
from domain.late import ClosedProcess, LateAction, late_case_id, late_handling, plan_goods
from domain.sla import CaseKind
from tests.support import event

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def closed(**state: object) -> ClosedProcess:
    return ClosedProcess(workflow_id="w", run_id="r", workflow_type="T", business_key="b", outcome="o", stage="s",
                         closed_at=T0, state=dict(state))


def test_every_late_event_is_recorded_applied_or_cased() -> None:
    for t in EventType:
        h = late_handling(t)
        assert (h.action is LateAction.RECORD) == (h.case_kind is None), t
    assert late_handling(EventType.SHIPMENT_DELIVERED).action is LateAction.RECORD
    assert late_handling(EventType.PAYMENT_SETTLED).case_kind is CaseKind.LATE_EVENT
    assert late_handling(EventType.SHIPMENT_DISPATCHED).case_kind is CaseKind.SHIPPED_AFTER_CANCEL


def test_the_case_id_is_known_before_the_late_process_runs() -> None:
    assert late_case_id("late:webhook:wms:m1", EventType.RETURN_RECEIVED) == "exception:late:webhook:wms:m1:late_event"
    assert late_case_id("late:webhook:carrier:m1", EventType.SHIPMENT_DELIVERED) is None


def test_a_late_return_parcel_enters_pending_inspection_without_any_record() -> None:
    plan = plan_goods(event(EventType.RETURN_RECEIVED, {"return_id": "R1", "location_id": "ST-NYC", "lines": [
        {"sku": "A", "quantity": 1}, {"sku": "A", "quantity": 2}]}), None)
    [m] = plan.movements
    assert m.kind is MovementKind.RETURN_RECEIPT and [(ln.sku, ln.quantity) for ln in m.lines] == [("A", 3)]


def test_a_late_transfer_receipt_needs_the_destination_from_the_record() -> None:
    receipt = event(EventType.TRANSFER_RECEIVED, {"transfer_id": "T1", "lines": [{"sku": "A", "quantity": 2}]})
    assert plan_goods(receipt, None).movements == [] and plan_goods(receipt, None).unresolved
    [m] = plan_goods(receipt, closed(to_location_id="ST-NYC")).movements
    assert (m.kind, m.reason_code, m.lines[0].bucket, m.lines[0].location_id) == (
        MovementKind.ADJUST, "late_receipt", Bucket.AVAILABLE, "ST-NYC")


def test_a_late_dispatch_takes_the_order_lines_skus_out_and_names_unknown_lines() -> None:
    parcel = event(EventType.SHIPMENT_DISPATCHED, {
        "shipment_id": "S1", "order_id": "O1", "channel": "web", "location_id": "DC-EAST", "carrier": "ups",
        "tracking_number": "1Z", "lines": [{"line_id": "1", "quantity": 2}, {"line_id": "9", "quantity": 1}]})
    plan = plan_goods(parcel, closed(lines=[{"line_id": "1", "sku": "A", "released": 2, "location_id": "DC-EAST"}]))
    assert [m.kind for m in plan.movements] == [MovementKind.RESERVE, MovementKind.PICK, MovementKind.SHIP]
    assert all([(ln.sku, ln.quantity) for ln in m.lines] == [("A", 2)] for m in plan.movements)
    assert plan.unresolved == ["line 9 is not a line of the order"]


def test_a_late_po_receipt_is_received_into_available() -> None:
    plan = plan_goods(event(EventType.PURCHASE_ORDER_RECEIVED, {"po_id": "P1", "receipt_id": "RC1",
                                                               "location_id": "DC-EAST",
                                                               "lines": [{"line_id": "1", "sku": "A", "quantity": 4}]}),
                      closed())
    [m] = plan.movements
    assert m.kind is MovementKind.RECEIPT and m.lines[0].quantity == 4

"""SLA kinds, their defaults, and the policy a process carries.

A process receives its resolved `SlaPolicy` in its input (from settings, per channel), so the deadlines it
works to are recorded in its history and stay the same on replay whatever the settings say later.
"""
from datetime import timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class SlaKind(StrEnum):
    PICK_OVERDUE = "pick_overdue"
    SHIP_OVERDUE = "ship_overdue"
    AUTHORIZATION_EXPIRING = "authorization_expiring"
    PICKUP_EXPIRED = "pickup_expired"
    SETTLEMENT_OVERDUE = "settlement_overdue"
    TRANSFER_SHIP_OVERDUE = "transfer_ship_overdue"
    TRANSFER_OVERDUE = "transfer_overdue"
    RETURN_NOT_RECEIVED = "return_not_received"
    INSPECTION_OVERDUE = "inspection_overdue"
    REFUND_OVERDUE = "refund_overdue"
    PO_RECEIPT_OVERDUE = "po_receipt_overdue"
    COUNT_APPROVAL_OVERDUE = "count_approval_overdue"
    VENDOR_CREDIT_OVERDUE = "vendor_credit_overdue"


class CaseKind(StrEnum):
    """Every kind of exception case: the SLA clocks plus the cases an event itself raises."""

    PICK_OVERDUE = "pick_overdue"
    SHIP_OVERDUE = "ship_overdue"
    AUTHORIZATION_EXPIRING = "authorization_expiring"
    PICKUP_EXPIRED = "pickup_expired"
    SETTLEMENT_OVERDUE = "settlement_overdue"
    SETTLEMENT_MISMATCH = "settlement_mismatch"
    TRANSFER_SHIP_OVERDUE = "transfer_ship_overdue"
    TRANSFER_OVERDUE = "transfer_overdue"
    RECEIPT_VARIANCE = "receipt_variance"
    RETURN_NOT_RECEIVED = "return_not_received"
    INSPECTION_OVERDUE = "inspection_overdue"
    REFUND_OVERDUE = "refund_overdue"
    SHORT_PICK = "short_pick"
    OVER_CAPTURE = "over_capture"
    RECONCILIATION = "reconciliation"
    LATE_EVENT = "late_event"  # an event for a process that had already ended (stored, applied where it must be)
    SHIPPED_AFTER_CANCEL = "shipped_after_cancel"  # the WMS dispatched a parcel of a cancelled order
    OVER_RETURN = "over_return"  # a return asked for more than is still returnable (other returns counted)
    PO_RECEIPT_OVERDUE = "po_receipt_overdue"
    OVER_RECEIPT = "over_receipt"  # received beyond the PO line's tolerance: received all the same
    UNKNOWN_PO_LINE = "unknown_po_line"  # a receipt line the PO does not have: received all the same
    COUNT_APPROVAL_OVERDUE = "count_approval_overdue"
    COUNT_BELOW_HELD = "count_below_held"  # counted fewer than running processes hold: not adjusted below that
    VENDOR_CREDIT_OVERDUE = "vendor_credit_overdue"
    VENDOR_CREDIT_MISMATCH = "vendor_credit_mismatch"  # the credit differs from the receivable
    VENDOR_RETURN_SHORT = "vendor_return_short"  # shipped to the vendor more than `vendor_return` held


SLA_DEFAULTS: dict[SlaKind, timedelta] = {
    SlaKind.PICK_OVERDUE: timedelta(hours=4),
    SlaKind.SHIP_OVERDUE: timedelta(hours=24),
    SlaKind.AUTHORIZATION_EXPIRING: timedelta(days=6),
    SlaKind.PICKUP_EXPIRED: timedelta(hours=72),
    SlaKind.SETTLEMENT_OVERDUE: timedelta(days=3),
    SlaKind.TRANSFER_SHIP_OVERDUE: timedelta(hours=24),
    SlaKind.TRANSFER_OVERDUE: timedelta(hours=48),
    SlaKind.RETURN_NOT_RECEIVED: timedelta(days=30),
    SlaKind.INSPECTION_OVERDUE: timedelta(hours=72),
    SlaKind.REFUND_OVERDUE: timedelta(days=5),
    # po_receipt_overdue runs from the PO's expected_at (not from its creation): its deadline is the grace.
    SlaKind.PO_RECEIPT_OVERDUE: timedelta(hours=24),
    SlaKind.COUNT_APPROVAL_OVERDUE: timedelta(hours=24),
    SlaKind.VENDOR_CREDIT_OVERDUE: timedelta(days=30),
}


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    def escalated(self) -> "Severity":
        order = list(Severity)
        return order[min(order.index(self) + 1, len(order) - 1)]


class SlaPolicy(BaseModel):
    """Deadlines for one process, resolved from settings for its channel when it starts."""

    model_config = ConfigDict(frozen=True)

    deadlines: dict[SlaKind, timedelta] = Field(default_factory=lambda: dict(SLA_DEFAULTS))
    escalate_every: timedelta = timedelta(hours=4)

    def deadline(self, kind: SlaKind) -> timedelta:
        return self.deadlines.get(kind, SLA_DEFAULTS[kind])

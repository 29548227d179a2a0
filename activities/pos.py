"""POS / payments activities: capture against an authorization, void, refund.

INTERFACE STUB (foundation): filled in by the ledger issue.
"""
from pydantic import BaseModel
from temporalio import activity

from domain.money import Amount


class CaptureInput(BaseModel):
    key: str
    payment_id: str
    authorized_amount: Amount
    amount: Amount
    currency: str
    reference: str  # shipment_id


class CaptureResult(BaseModel):
    key: str
    applied: bool
    captured_total: Amount  # all captures on this payment so far


class VoidInput(BaseModel):
    key: str
    payment_id: str
    reason: str


class VoidResult(BaseModel):
    key: str
    applied: bool
    voided_amount: Amount


class RefundInput(BaseModel):
    key: str
    payment_id: str | None
    return_id: str
    amount: Amount
    currency: str


class RefundResult(BaseModel):
    key: str
    applied: bool
    refund_reference: str


class PosActivities:
    def __init__(self, pos: "object") -> None:
        self.pos = pos

    @activity.defn(name="capture_payment")
    async def capture_payment(self, input: CaptureInput) -> CaptureResult:
        """Raises non-retryable OverCapture when captures would exceed the authorization."""
        raise NotImplementedError

    @activity.defn(name="void_payment")
    async def void_payment(self, input: VoidInput) -> VoidResult:
        raise NotImplementedError

    @activity.defn(name="refund_payment")
    async def refund_payment(self, input: RefundInput) -> RefundResult:
        raise NotImplementedError

"""POS / payments activities: capture against an authorization, void, refund. Thin wrappers over a PosPort."""
from typing import TYPE_CHECKING

from pydantic import BaseModel
from temporalio import activity

from activities.calls import guarded
from activities.faults import Faults
from domain.money import Amount

if TYPE_CHECKING:
    from activities.adapters.ports import PosPort


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
    # what was authorized, so a payment never captured (e.g. an expired pickup) can still be released
    authorized_amount: Amount | None = None
    currency: str | None = None


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


class PaymentLookupInput(BaseModel):
    references: list[str]  # shipment_ids (a capture's reference)


class PaymentLookupResult(BaseModel):
    payment_id: str | None = None  # None when no capture, or captures of several payments, match
    candidates: list[str] = []


class PosActivities:
    """Activities over the POS port; a team swaps the port, never these."""

    def __init__(self, pos: "PosPort", faults: Faults | None = None) -> None:
        self.pos = pos
        self.faults = faults

    @activity.defn(name="capture_payment")
    async def capture_payment(self, input: CaptureInput) -> CaptureResult:
        """Raises non-retryable OverCapture when captures would exceed the authorization."""
        return await guarded(self.faults, "pos.capture_payment", lambda: self.pos.capture(input))

    @activity.defn(name="void_payment")
    async def void_payment(self, input: VoidInput) -> VoidResult:
        return await guarded(self.faults, "pos.void_payment", lambda: self.pos.void(input))

    @activity.defn(name="refund_payment")
    async def refund_payment(self, input: RefundInput) -> RefundResult:
        """Raises non-retryable OverCapture when refunds would exceed what the payment captured."""
        return await guarded(self.faults, "pos.refund_payment", lambda: self.pos.refund(input))

    @activity.defn(name="find_payment")
    async def find_payment(self, input: PaymentLookupInput) -> PaymentLookupResult:
        return await guarded(self.faults, "pos.find_payment", lambda: self.pos.payment_for(input))

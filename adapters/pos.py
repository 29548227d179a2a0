"""The POS port: the messages the workflows, activities and adapters exchange, and the Protocol an
implementation satisfies (the PostgreSQL stub, or a team's real system)."""
from typing import Protocol, runtime_checkable

from pydantic import BaseModel

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


@runtime_checkable
class PosPort(Protocol):
    """Payments: capture against an authorization, void what is left, refund."""

    async def capture(self, capture: CaptureInput) -> CaptureResult: ...

    async def void(self, void: VoidInput) -> VoidResult: ...

    async def refund(self, refund: RefundInput) -> RefundResult: ...

    async def payment_for(self, lookup: PaymentLookupInput) -> PaymentLookupResult:
        """The payment whose captures reference these shipments (release 1.0 shipment records name none)."""
        ...

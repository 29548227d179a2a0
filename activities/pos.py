"""POS / payments activities: capture against an authorization, void, refund. Thin wrappers over a PosPort."""
from temporalio import activity

from activities.faults import Faults
from activities.guarded import guarded
from adapters.pos import (
    CaptureInput,
    CaptureResult,
    PaymentLookupInput,
    PaymentLookupResult,
    PosPort,
    RefundInput,
    RefundResult,
    VoidInput,
    VoidResult,
)


class PosActivities:
    """Activities over the POS port; a team swaps the port, never these."""

    def __init__(self, pos: PosPort, faults: Faults | None = None) -> None:
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

"""The ports the activities call. A team that replaces a stub with its real ERP, WMS or POS writes one class
satisfying one of these Protocols; the activities, their retry policies and the workflows stay as they are.

Implementations raise `domain.errors.DomainError` for business refusals (the activities turn them into
non-retryable ApplicationErrors) and any other exception for transient trouble (retried). Every writing
operation is idempotent by its `key`: the same key returns the first result and changes nothing; the same key
with a different request raises DomainError(IdempotencyConflict).
"""
from datetime import datetime
from typing import Protocol, runtime_checkable

from activities.erp import (
    AvailabilityRow,
    FinancialPosting,
    MovementResult,
    PostingResult,
)
from activities.pos import (
    CaptureInput,
    CaptureResult,
    PaymentLookupInput,
    PaymentLookupResult,
    RefundInput,
    RefundResult,
    VoidInput,
    VoidResult,
)
from activities.wms import (
    AuthorizeReturnInput,
    AuthorizeReturnResult,
    CancelFulfillmentInput,
    CancelFulfillmentResult,
    CloseReturnInput,
    CloseReturnResult,
    PickTaskInput,
    ReceiptRecord,
    ShipmentRecord,
    ShippedLinesInput,
    ShippedLinesResult,
    TransferShipmentInput,
    WmsRecordResult,
)
from domain.inventory import MovementRequest
from domain.items import Item, Location


@runtime_checkable
class ErpPort(Protocol):
    """Item master, the inventory ledger and the journal."""

    async def items(self, skus: list[str]) -> dict[str, Item]: ...

    async def locations(self, location_ids: list[str] | None) -> dict[str, Location]: ...

    async def availability(self, skus: list[str], location_ids: list[str] | None) -> list[AvailabilityRow]:
        """Raw `available` bucket per SKU x location (safety stock is the activity's business)."""
        ...

    async def stock_at(self, skus: list[str], location_id: str,
                       as_of: datetime | None) -> dict[str, dict[str, int]]:
        """sku -> bucket -> units at one location for the known SKUs, now or as of a past moment."""
        ...

    async def post_movement(self, request: MovementRequest) -> MovementResult: ...

    async def post_financial(self, posting: FinancialPosting) -> PostingResult: ...


@runtime_checkable
class WmsPort(Protocol):
    """Pick tasks, customer shipments (and their interception), transfer shipments and receipts."""

    async def create_pick_task(self, task: PickTaskInput) -> WmsRecordResult: ...

    async def record_shipment(self, shipment: ShipmentRecord) -> WmsRecordResult: ...

    async def shipped_lines(self, query: ShippedLinesInput) -> ShippedLinesResult: ...

    async def cancel_fulfillment(self, request: CancelFulfillmentInput) -> CancelFulfillmentResult:
        """Stop the order's fulfilment at the location if the parcel has not left: `intercepted`, else
        `already_dispatched`. Idempotent by key: a retry gets the first answer."""
        ...

    async def create_transfer_shipment(self, shipment: TransferShipmentInput) -> WmsRecordResult: ...

    async def record_receipt(self, receipt: ReceiptRecord) -> WmsRecordResult: ...

    async def authorize_return(self, request: AuthorizeReturnInput) -> AuthorizeReturnResult:
        """Returnable quantities across returns of one order, decided where two returns cannot both pass."""
        ...

    async def close_return(self, request: CloseReturnInput) -> CloseReturnResult: ...


@runtime_checkable
class PosPort(Protocol):
    """Payments: capture against an authorization, void what is left, refund."""

    async def capture(self, capture: CaptureInput) -> CaptureResult: ...

    async def void(self, void: VoidInput) -> VoidResult: ...

    async def refund(self, refund: RefundInput) -> RefundResult: ...

    async def payment_for(self, lookup: PaymentLookupInput) -> PaymentLookupResult:
        """The payment whose captures reference these shipments (release 1.0 shipment records name none)."""
        ...

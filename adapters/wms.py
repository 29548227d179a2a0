"""The WMS port: the messages the workflows, activities and adapters exchange, and the Protocol an
implementation satisfies (the PostgreSQL stub, or a team's real system)."""
from enum import StrEnum
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, Field

from domain.money import Amount


class TaskLine(BaseModel):
    line_id: str  # order line, or the SKU for transfers
    sku: str
    quantity: int


class PickTaskInput(BaseModel):
    key: str
    channel: str
    order_id: str
    location_id: str
    lines: list[TaskLine]


class ShippedLine(BaseModel):
    line_id: str
    sku: str
    quantity: int
    unit_price: Amount
    currency: str
    amount: Amount | None = None  # release 2: the money charged for this line in this shipment, to the cent


class ShipmentRecord(BaseModel):
    key: str
    shipment_id: str
    channel: str
    order_id: str
    location_id: str
    carrier: str | None = None  # None for a pickup hand-over
    tracking_number: str | None = None
    lines: list[ShippedLine]
    payment_id: str | None = None  # release 2: the payment this shipment was charged to


class ShippedLinesInput(BaseModel):
    channel: str
    order_id: str


class ShippedLinesResult(BaseModel):
    lines: list[ShippedLine] = Field(default_factory=list)  # summed per line_id over all shipments
    location_ids: list[str] = Field(default_factory=list)


class ReturnLineRequest(BaseModel):
    line_id: str
    sku: str
    quantity: int
    reason: str = ""


class AuthorizeReturnInput(BaseModel):
    """Authorize a return against its order, once per `key` (the return's own key)."""

    key: str
    return_id: str
    channel: str
    order_id: str
    lines: list[ReturnLineRequest]


class AuthorizedLine(BaseModel):
    line_no: int  # position in the request
    line_id: str
    sku: str
    requested: int
    authorized: int  # 0 when refused
    refused_reason: str | None = None
    refusal: str | None = None  # domain.returns.Refusal
    shipped: int = 0
    already: int = 0  # units other returns held on the line when this one was decided
    unit_price: Amount | None = None
    charged: Amount | None = None  # what the order line was charged in all its shipments
    currency: str | None = None
    sale_location_id: str | None = None  # the location that shipped the line


class AuthorizeReturnResult(BaseModel):
    key: str
    applied: bool  # False: decided before (a retry), this is the first decision
    lines: list[AuthorizedLine]
    payment_id: str | None = None  # from the shipment records (None on release 1.0 records)
    shipment_ids: list[str] = Field(default_factory=list)


class CloseReturnInput(BaseModel):
    """Close a return's authorization: refund `accepted` units per line_no, release the rest."""

    key: str  # the authorization's key
    accepted: dict[int, int] = Field(default_factory=dict)  # line_no -> units accepted at inspection


class ClosedLine(BaseModel):
    line_no: int
    line_id: str
    refunded_units: int
    refund: Amount
    released: int
    sale_location_id: str | None = None


class CloseReturnResult(BaseModel):
    key: str
    applied: bool
    lines: list[ClosedLine]
    total: Amount


class TransferShipmentInput(BaseModel):
    key: str
    transfer_id: str
    from_location_id: str
    to_location_id: str
    lines: list[TaskLine]


class ReceiptRecord(BaseModel):
    key: str
    kind: str  # "transfer", "return" or "purchase_order"
    reference: str  # transfer_id or return_id
    location_id: str
    lines: list[TaskLine]


class InterceptAnswer(StrEnum):
    INTERCEPTED = "intercepted"  # the WMS stopped the order there: nothing left, the units are ours to put back
    ALREADY_DISPATCHED = "already_dispatched"  # the parcel left: a shipment.dispatched is coming


class CancelFulfillmentInput(BaseModel):
    """Ask the WMS to stop an order's fulfilment at one location (pick task, staged parcel)."""

    key: str
    channel: str
    order_id: str
    location_id: str
    reason: str


class CancelFulfillmentResult(BaseModel):
    key: str
    answer: InterceptAnswer
    applied: bool  # False: a retry of the key, answered as the first time


class WmsRecordResult(BaseModel):
    key: str
    applied: bool


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

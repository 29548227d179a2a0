"""WMS activities: pick tasks, customer shipments, transfer shipments and receipts. Thin wrappers over a WmsPort."""
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field
from temporalio import activity

from activities.calls import guarded
from activities.faults import Faults
from domain.money import Amount

if TYPE_CHECKING:
    from activities.adapters.ports import WmsPort


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


class WmsActivities:
    """Activities over the WMS port; a team swaps the port, never these."""

    def __init__(self, wms: "WmsPort", faults: Faults | None = None) -> None:
        self.wms = wms
        self.faults = faults

    @activity.defn(name="create_pick_task")
    async def create_pick_task(self, input: PickTaskInput) -> WmsRecordResult:
        return await guarded(self.faults, "wms.create_pick_task", lambda: self.wms.create_pick_task(input))

    @activity.defn(name="record_shipment")
    async def record_shipment(self, input: ShipmentRecord) -> WmsRecordResult:
        return await guarded(self.faults, "wms.record_shipment", lambda: self.wms.record_shipment(input))

    @activity.defn(name="cancel_fulfillment")
    async def cancel_fulfillment(self, input: CancelFulfillmentInput) -> CancelFulfillmentResult:
        """A cancel is a request the WMS answers: `intercepted`, or `already_dispatched` (the parcel left)."""
        return await guarded(self.faults, "wms.cancel_fulfillment", lambda: self.wms.cancel_fulfillment(input))

    @activity.defn(name="get_shipped_lines")
    async def get_shipped_lines(self, input: ShippedLinesInput) -> ShippedLinesResult:
        return await guarded(self.faults, "wms.get_shipped_lines", lambda: self.wms.shipped_lines(input))

    @activity.defn(name="authorize_return")
    async def authorize_return(self, input: AuthorizeReturnInput) -> AuthorizeReturnResult:
        """Per line: authorized <= shipped - what other returns of the order hold, decided under the order's
        row lock (two returns of one line can never both pass). Idempotent by key."""
        return await guarded(self.faults, "wms.authorize_return", lambda: self.wms.authorize_return(input))

    @activity.defn(name="close_return")
    async def close_return(self, input: CloseReturnInput) -> CloseReturnResult:
        """Price the refund of the accepted units (cumulative over the line's returns, at the price charged)
        and release what was authorized but not accepted. Idempotent by key."""
        return await guarded(self.faults, "wms.close_return", lambda: self.wms.close_return(input))

    @activity.defn(name="create_transfer_shipment")
    async def create_transfer_shipment(self, input: TransferShipmentInput) -> WmsRecordResult:
        return await guarded(self.faults, "wms.create_transfer_shipment",
                             lambda: self.wms.create_transfer_shipment(input))

    @activity.defn(name="record_receipt")
    async def record_receipt(self, input: ReceiptRecord) -> WmsRecordResult:
        return await guarded(self.faults, "wms.record_receipt", lambda: self.wms.record_receipt(input))

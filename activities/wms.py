"""WMS activities: pick tasks, customer shipments, transfer shipments and receipts. Thin wrappers over a WmsPort."""
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


class ShipmentRecord(BaseModel):
    key: str
    shipment_id: str
    channel: str
    order_id: str
    location_id: str
    carrier: str | None = None  # None for a pickup hand-over
    tracking_number: str | None = None
    lines: list[ShippedLine]


class ShippedLinesInput(BaseModel):
    channel: str
    order_id: str


class ShippedLinesResult(BaseModel):
    lines: list[ShippedLine] = Field(default_factory=list)  # summed per line_id over all shipments
    location_ids: list[str] = Field(default_factory=list)


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

    @activity.defn(name="get_shipped_lines")
    async def get_shipped_lines(self, input: ShippedLinesInput) -> ShippedLinesResult:
        return await guarded(self.faults, "wms.get_shipped_lines", lambda: self.wms.shipped_lines(input))

    @activity.defn(name="create_transfer_shipment")
    async def create_transfer_shipment(self, input: TransferShipmentInput) -> WmsRecordResult:
        return await guarded(self.faults, "wms.create_transfer_shipment",
                             lambda: self.wms.create_transfer_shipment(input))

    @activity.defn(name="record_receipt")
    async def record_receipt(self, input: ReceiptRecord) -> WmsRecordResult:
        return await guarded(self.faults, "wms.record_receipt", lambda: self.wms.record_receipt(input))

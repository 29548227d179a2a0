"""WMS activities: pick tasks, customer shipments, transfer shipments and receipts. Thin wrappers over a WmsPort."""
from temporalio import activity

from activities.faults import Faults
from activities.guarded import guarded
from adapters.wms import (
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
    WmsPort,
    WmsRecordResult,
)


class WmsActivities:
    """Activities over the WMS port; a team swaps the port, never these."""

    def __init__(self, wms: WmsPort, faults: Faults | None = None) -> None:
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

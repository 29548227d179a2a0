"""The one mapping from a business event to the process it belongs to. Pure, shared by the webhook edge
and by processes that hand events to each other."""
from dataclasses import dataclass

from domain import ids
from domain.events import Event, EventType, ProcessName

# Events that open (rather than advance) their process.
OPENING_EVENTS = frozenset(
    {EventType.ORDER_PLACED, EventType.TRANSFER_REQUESTED, EventType.RETURN_AUTHORIZED, EventType.ORDER_SHIPPED}
) | frozenset({EventType.PURCHASE_ORDER_CREATED, EventType.COUNT_SUBMITTED, EventType.VENDOR_RETURN_SHIPPED})


@dataclass(frozen=True)
class Route:
    process: ProcessName
    workflow_type: str
    workflow_id: str
    channel: str | None
    opens: bool
    business_key: str  # what ops search by: "web/1042" for an order and its settlement, else the document ID


def route(event: Event) -> Route:
    d = event.data
    t = event.type
    if t in {
        EventType.ORDER_PLACED,
        EventType.ORDER_CANCELLED,
        EventType.FULFILLMENT_PICKED,
        EventType.SHIPMENT_DISPATCHED,
        EventType.ORDER_COLLECTED,
    }:
        return Route("order", "ReserveToFulfill", ids.order_workflow_id(d.channel, d.order_id), d.channel,
                     t in OPENING_EVENTS, ids.order_business_key(d.channel, d.order_id))
    if t in {EventType.SHIPMENT_DELIVERED, EventType.PAYMENT_SETTLED, EventType.ORDER_SHIPPED, EventType.ORDER_CLOSED}:
        return Route("settle", "ShipToSettle", ids.settle_workflow_id(d.channel, d.order_id), d.channel,
                     t in OPENING_EVENTS, ids.order_business_key(d.channel, d.order_id))
    if t in {EventType.TRANSFER_REQUESTED, EventType.TRANSFER_SHIPPED, EventType.TRANSFER_RECEIVED}:
        return Route("transfer", "Transfer", ids.transfer_workflow_id(d.transfer_id), None, t in OPENING_EVENTS,
                     d.transfer_id)
    if t in {EventType.RETURN_AUTHORIZED, EventType.RETURN_RECEIVED, EventType.RETURN_INSPECTED,
             EventType.REFUND_SETTLED}:
        channel = getattr(d, "channel", None)
        return Route("return", "ReturnToRefund", ids.return_workflow_id(d.return_id), channel, t in OPENING_EVENTS,
                     d.return_id)
    if t in {EventType.PURCHASE_ORDER_CREATED, EventType.PURCHASE_ORDER_RECEIVED, EventType.PURCHASE_ORDER_CLOSED}:
        return Route("po", "ReceiveToStock", ids.po_workflow_id(d.po_id), None, t in OPENING_EVENTS, d.po_id)
    if t is EventType.COUNT_SUBMITTED:
        return Route("count", "CountToAdjust", ids.count_workflow_id(d.count_id), None, True, d.count_id)
    if t in {EventType.VENDOR_RETURN_SHIPPED, EventType.VENDOR_CREDIT_RECEIVED}:
        return Route("rtv", "VendorReturn", ids.rtv_workflow_id(d.rtv_id), None, t in OPENING_EVENTS, d.rtv_id)
    raise ValueError(f"no process for event type {t}")

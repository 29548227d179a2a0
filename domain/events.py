"""The business events of the contract: the body of every webhook and the payload of every process signal.

One pydantic model per event type's `data`; `EVENT_DATA` maps the type name to it. The HTTP edge validates
with these, the OpenAPI document publishes them, and the workflows receive them unchanged inside an
`Event` envelope whose `event_id` (the delivery's `webhook-id`) makes redelivery harmless.
"""
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from domain.money import Amount, round_money

Id = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._\-]+$")]
Sku = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._\-]+$")]
Uom = Annotated[str, StringConstraints(min_length=1, max_length=16, pattern=r"^[A-Z0-9_]+$")]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Quantity = Annotated[int, Field(gt=0, le=1_000_000)]
PositiveAmount = Annotated[Amount, Field(gt=Decimal(0), max_digits=14, decimal_places=2)]
ReturnQuantity = Annotated[int, Field(ge=0, le=1_000_000)]


class _Data(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class OrderLine(_Data):
    line_id: Id
    sku: Sku
    quantity: Quantity
    uom: Uom = "EA"
    unit_price: Annotated[Amount, Field(ge=Decimal(0), max_digits=14, decimal_places=2)]


class FulfillmentMode(StrEnum):
    SHIP = "ship"
    PICKUP = "pickup"


class Fulfillment(_Data):
    mode: FulfillmentMode
    location_id: Id | None = None  # pickup store, or the preferred node for ship


class Payment(_Data):
    payment_id: Id
    authorized_amount: Annotated[Amount, Field(ge=Decimal(0), max_digits=14, decimal_places=2)]


class OrderPlaced(_Data):
    """Placement checks the body alone can show (a 422 at the door, field by field): every line_id once, and
    the order total (quantity x unit_price over the lines) within the authorized amount. The check against
    the item master (currency, units) is the workflow's: it needs the ERP."""

    order_id: Id
    channel: Id
    currency: Currency
    lines: list[OrderLine] = Field(min_length=1, max_length=500)
    fulfillment: Fulfillment
    payment: Payment

    @field_validator("lines")
    @classmethod
    def _line_ids_once(cls, lines: list[OrderLine]) -> list[OrderLine]:
        seen: set[str] = set()
        twice = [ln.line_id for ln in lines if ln.line_id in seen or seen.add(ln.line_id)]
        if twice:
            raise ValueError(f"line_id {', '.join(repr(i) for i in dict.fromkeys(twice))} appears more than once: "
                             "every order line needs its own line_id")
        return lines

    @field_validator("payment")
    @classmethod
    def _total_within_authorization(cls, payment: Payment, info: ValidationInfo) -> Payment:
        lines = info.data.get("lines")  # absent when the lines themselves were refused
        if lines:
            total = order_total(lines)
            if total > payment.authorized_amount:
                raise ValueError(f"the order total {total} (quantity x unit_price over the lines) exceeds the "
                                 f"authorized amount {payment.authorized_amount}")
        return payment

    @property
    def total(self) -> Decimal:
        return order_total(self.lines)


def order_total(lines: "list[OrderLine]") -> Decimal:
    """What the lines cost: quantity x unit_price, summed, to the cent (the line amounts rule 7 splits)."""
    return sum((line_amount(ln) for ln in lines), Decimal(0))


def line_amount(line: OrderLine) -> Decimal:
    """One line's charged total, to the cent: the whole a split over shipments or units must add up to."""
    return round_money(Decimal(line.quantity) * line.unit_price)


class OrderCancelled(_Data):
    order_id: Id
    channel: Id
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class LineQuantity(_Data):
    line_id: Id
    quantity: Annotated[int, Field(ge=0, le=1_000_000)]


class FulfillmentPicked(_Data):
    order_id: Id
    channel: Id
    location_id: Id
    lines: list[LineQuantity] = Field(min_length=1, max_length=500)


class ShipmentDispatched(_Data):
    shipment_id: Id
    order_id: Id
    channel: Id
    location_id: Id
    carrier: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    tracking_number: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    lines: list[LineQuantity] = Field(min_length=1, max_length=500)


class OrderCollected(_Data):
    order_id: Id
    channel: Id
    location_id: Id


class ShipmentDelivered(_Data):
    shipment_id: Id
    order_id: Id
    channel: Id


class PaymentSettled(_Data):
    """`amount` is the gross settled (what the payment paid for the order); the optional `fee` is what the
    processor kept out of it, so the cash received is amount - fee. Matching compares the gross."""

    payment_id: Id
    order_id: Id
    channel: Id
    amount: PositiveAmount
    currency: Currency
    fee: Annotated[Amount, Field(ge=Decimal(0), max_digits=14, decimal_places=2)] | None = None

    @model_validator(mode="after")
    def _fee_within_amount(self) -> "PaymentSettled":
        if self.fee is not None and self.fee > self.amount:
            raise ValueError(f"the processor fee {self.fee} exceeds the settled amount {self.amount}")
        return self


class SkuQuantity(_Data):
    sku: Sku
    quantity: Quantity


class SkuQuantityUom(SkuQuantity):
    uom: Uom = "EA"


class TransferRequested(_Data):
    transfer_id: Id
    from_location_id: Id
    to_location_id: Id
    lines: list[SkuQuantityUom] = Field(min_length=1, max_length=500)


class TransferShipped(_Data):
    transfer_id: Id
    lines: list[SkuQuantity] = Field(min_length=1, max_length=500)
    # Optional (release 2): this is the last truck; what is still reserved and not shipped is released at once.
    # Without it the rest stays reserved until the ship grace passes (docs/transfers.md).
    complete: bool = False


class ReceivedQuantity(_Data):
    sku: Sku
    quantity: ReturnQuantity  # zero is a real count: nothing of that SKU arrived


class TransferReceived(_Data):
    transfer_id: Id
    lines: list[ReceivedQuantity] = Field(min_length=1, max_length=500)


class ReturnLine(_Data):
    line_id: Id
    sku: Sku
    quantity: Quantity
    reason: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class ReturnAuthorized(_Data):
    return_id: Id
    order_id: Id
    channel: Id
    return_location_id: Id
    lines: list[ReturnLine] = Field(min_length=1, max_length=500)


class ReturnReceived(_Data):
    return_id: Id
    location_id: Id
    lines: list[SkuQuantity] = Field(min_length=1, max_length=500)


class Disposition(StrEnum):
    RESTOCK = "restock"
    DAMAGED = "damaged"
    VENDOR_RETURN = "vendor_return"


class InspectedLine(SkuQuantity):
    disposition: Disposition


class ReturnInspected(_Data):
    return_id: Id
    lines: list[InspectedLine] = Field(min_length=1, max_length=500)


class RefundSettled(_Data):
    refund_id: Id
    return_id: Id
    amount: PositiveAmount
    currency: Currency


class PricedLine(_Data):
    line_id: Id
    sku: Sku
    quantity: Quantity  # base units (EA)
    unit_price: Amount  # per EA
    # the money charged for this line in this shipment, to the cent (its share of the line total); set by
    # release 2, so the shares of a line over its shipments add up to the line total exactly
    amount: Amount | None = None


class OrderShipped(_Data):
    """Internal: ReserveToFulfill hands one dispatched (or collected) shipment to ShipToSettle."""

    order_id: Id
    channel: Id
    shipment_id: Id
    location_id: Id
    currency: Currency
    payment: Payment
    lines: list[PricedLine] = Field(min_length=1)
    # Release 3: the shipment that ends the order carries the close too (one hand-over instead of two): no
    # further shipment will come; `closed.shipment_ids` are every shipment ShipToSettle was handed.
    closed: "OrderClosed | None" = None


class OrderClosed(_Data):
    """Internal: ReserveToFulfill says no further shipment will come (all shipped, or the rest cancelled)."""

    order_id: Id
    channel: Id
    outcome: str
    shipment_ids: list[str] = Field(default_factory=list)


# --- inventory control: receipts against purchase orders, cycle counts, returns to vendors -------------------
class PurchaseOrderLine(_Data):
    line_id: Id
    sku: Sku
    quantity: Quantity
    uom: Uom = "EA"
    unit_cost: Annotated[Amount, Field(ge=Decimal(0), max_digits=14, decimal_places=4)]  # per `uom`


class PurchaseOrderCreated(_Data):
    po_id: Id
    supplier_id: Id
    location_id: Id
    currency: Currency
    expected_at: AwareDatetime  # with its offset: a deadline is a moment, not a wall-clock reading
    lines: list[PurchaseOrderLine] = Field(min_length=1, max_length=500)


class ReceiptLine(_Data):
    line_id: Id
    sku: Sku
    quantity: Quantity  # base units (EA)


class PurchaseOrderReceived(_Data):
    po_id: Id
    receipt_id: Id
    location_id: Id
    lines: list[ReceiptLine] = Field(min_length=1, max_length=500)


class PurchaseOrderClosed(_Data):
    po_id: Id
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class CountedQuantity(_Data):
    sku: Sku
    quantity: ReturnQuantity  # zero is a real count: none on hand


class CountSubmitted(_Data):
    count_id: Id
    location_id: Id
    counted_at: AwareDatetime
    lines: list[CountedQuantity] = Field(min_length=1, max_length=500)


class VendorReturnShipped(_Data):
    rtv_id: Id
    location_id: Id
    supplier_id: Id
    lines: list[SkuQuantity] = Field(min_length=1, max_length=500)


class VendorCreditReceived(_Data):
    rtv_id: Id
    amount: Annotated[Amount, Field(ge=Decimal(0), max_digits=14, decimal_places=2)]  # zero: the vendor credits nothing
    currency: Currency


class EventType(StrEnum):
    ORDER_PLACED = "order.placed"
    ORDER_CANCELLED = "order.cancelled"
    FULFILLMENT_PICKED = "fulfillment.picked"
    SHIPMENT_DISPATCHED = "shipment.dispatched"
    ORDER_COLLECTED = "order.collected"
    SHIPMENT_DELIVERED = "shipment.delivered"
    PAYMENT_SETTLED = "payment.settled"
    TRANSFER_REQUESTED = "transfer.requested"
    TRANSFER_SHIPPED = "transfer.shipped"
    TRANSFER_RECEIVED = "transfer.received"
    RETURN_AUTHORIZED = "return.authorized"
    RETURN_RECEIVED = "return.received"
    RETURN_INSPECTED = "return.inspected"
    REFUND_SETTLED = "refund.settled"
    PURCHASE_ORDER_CREATED = "purchase_order.created"
    PURCHASE_ORDER_RECEIVED = "purchase_order.received"
    PURCHASE_ORDER_CLOSED = "purchase_order.closed"
    COUNT_SUBMITTED = "count.submitted"
    VENDOR_RETURN_SHIPPED = "vendor_return.shipped"
    VENDOR_CREDIT_RECEIVED = "vendor_credit.received"
    # Internal: sent by one process to another, never accepted from a webhook.
    ORDER_SHIPPED = "order.shipped"
    ORDER_CLOSED = "order.closed"


EVENT_DATA: dict[EventType, type[_Data]] = {
    EventType.ORDER_PLACED: OrderPlaced,
    EventType.ORDER_CANCELLED: OrderCancelled,
    EventType.FULFILLMENT_PICKED: FulfillmentPicked,
    EventType.SHIPMENT_DISPATCHED: ShipmentDispatched,
    EventType.ORDER_COLLECTED: OrderCollected,
    EventType.SHIPMENT_DELIVERED: ShipmentDelivered,
    EventType.PAYMENT_SETTLED: PaymentSettled,
    EventType.TRANSFER_REQUESTED: TransferRequested,
    EventType.TRANSFER_SHIPPED: TransferShipped,
    EventType.TRANSFER_RECEIVED: TransferReceived,
    EventType.RETURN_AUTHORIZED: ReturnAuthorized,
    EventType.RETURN_RECEIVED: ReturnReceived,
    EventType.RETURN_INSPECTED: ReturnInspected,
    EventType.REFUND_SETTLED: RefundSettled,
    EventType.ORDER_SHIPPED: OrderShipped,
    EventType.ORDER_CLOSED: OrderClosed,
    EventType.PURCHASE_ORDER_CREATED: PurchaseOrderCreated,
    EventType.PURCHASE_ORDER_RECEIVED: PurchaseOrderReceived,
    EventType.PURCHASE_ORDER_CLOSED: PurchaseOrderClosed,
    EventType.COUNT_SUBMITTED: CountSubmitted,
    EventType.VENDOR_RETURN_SHIPPED: VendorReturnShipped,
    EventType.VENDOR_CREDIT_RECEIVED: VendorCreditReceived,
}

# Which sources may send which event types (the contract's "sent by" column). Configured extra sources
# get their allowed types from settings.
SOURCE_EVENTS: dict[str, frozenset[EventType]] = {
    "web": frozenset({EventType.ORDER_PLACED, EventType.ORDER_CANCELLED, EventType.RETURN_AUTHORIZED}),
    "marketplace": frozenset({EventType.ORDER_PLACED, EventType.ORDER_CANCELLED, EventType.RETURN_AUTHORIZED}),
    "pos": frozenset(
        {
            EventType.ORDER_PLACED,
            EventType.ORDER_CANCELLED,
            EventType.FULFILLMENT_PICKED,
            EventType.ORDER_COLLECTED,
            EventType.TRANSFER_REQUESTED,
            EventType.TRANSFER_SHIPPED,
            EventType.TRANSFER_RECEIVED,
            EventType.RETURN_AUTHORIZED,
            EventType.RETURN_RECEIVED,
            EventType.RETURN_INSPECTED,
        }
    ),
    "wms": frozenset(
        {
            EventType.FULFILLMENT_PICKED,
            EventType.SHIPMENT_DISPATCHED,
            EventType.TRANSFER_REQUESTED,
            EventType.TRANSFER_SHIPPED,
            EventType.TRANSFER_RECEIVED,
            EventType.RETURN_RECEIVED,
            EventType.RETURN_INSPECTED,
        }
    ),
    "carrier": frozenset({EventType.SHIPMENT_DELIVERED}),
    "payments": frozenset({EventType.PAYMENT_SETTLED, EventType.REFUND_SETTLED}),
}
# Inventory control: the ERP owns purchase orders and vendor credits; receipts and counts come from the WMS or a
# store, a return to vendor ships from the WMS.
INVENTORY_CONTROL_EVENTS: dict[str, frozenset[EventType]] = {
    "erp": frozenset({EventType.PURCHASE_ORDER_CREATED, EventType.PURCHASE_ORDER_CLOSED,
                      EventType.VENDOR_CREDIT_RECEIVED}),
    "wms": frozenset({EventType.PURCHASE_ORDER_RECEIVED, EventType.COUNT_SUBMITTED,
                      EventType.VENDOR_RETURN_SHIPPED}),
    "pos": frozenset({EventType.PURCHASE_ORDER_RECEIVED, EventType.COUNT_SUBMITTED}),
}
for _source, _types in INVENTORY_CONTROL_EVENTS.items():
    SOURCE_EVENTS[_source] = SOURCE_EVENTS.get(_source, frozenset()) | _types

EventData = (
    OrderPlaced
    | OrderCancelled
    | FulfillmentPicked
    | ShipmentDispatched
    | OrderCollected
    | ShipmentDelivered
    | PaymentSettled
    | TransferRequested
    | TransferShipped
    | TransferReceived
    | ReturnAuthorized
    | ReturnReceived
    | ReturnInspected
    | RefundSettled
    | OrderShipped
    | OrderClosed
    | PurchaseOrderCreated
    | PurchaseOrderReceived
    | PurchaseOrderClosed
    | CountSubmitted
    | VendorReturnShipped
    | VendorCreditReceived
)


class Event(BaseModel):
    """A business event as a process receives it (signal or update payload).

    `event_id` is the delivery's idempotency key (the `webhook-id`, or a key derived by the process that
    forwarded it); a process applies each event_id once.
    """

    model_config = ConfigDict(frozen=True)

    event_id: str
    type: EventType
    occurred_at: datetime
    source: str
    data: EventData

    @model_validator(mode="before")
    @classmethod
    def _data_by_type(cls, value: Any) -> Any:
        # Choose the data model by `type`, never by shape: several events share field names.
        if isinstance(value, dict) and isinstance(value.get("data"), dict) and "type" in value:
            value = {**value, "data": EVENT_DATA[EventType(value["type"])].model_validate(value["data"])}
        return value

    @classmethod
    def parse(cls, event_id: str, type: EventType, occurred_at: datetime, source: str, data: dict) -> "Event":
        return cls(
            event_id=event_id,
            type=type,
            occurred_at=occurred_at,
            source=source,
            data=EVENT_DATA[type].model_validate(data),
        )


class WebhookBody(BaseModel):
    """The body every webhook carries: `{"type", "timestamp", "data"}`."""

    model_config = ConfigDict(extra="ignore")

    type: EventType
    timestamp: datetime
    data: dict


ProcessName = Literal["order", "settle", "transfer", "return", "po", "count", "rtv"]


def split_closing_shipment(event: Event) -> list[Event]:
    """A release-3 order.shipped that carries its order's close, as the two events a release-2 ShipToSettle run
    understands: the shipment, then order.closed (event ID `{order's internal ID}:closed`, the one a release-3
    order gives a plain close, so a redelivery of either is still seen once). Any other event: itself."""
    data = event.data
    if not isinstance(data, OrderShipped) or data.closed is None:
        return [event]
    prefix = event.event_id.split(":shipped:")[0]
    return [event.model_copy(update={"data": data.model_copy(update={"closed": None})}),
            event.model_copy(update={"event_id": f"{prefix}:closed", "type": EventType.ORDER_CLOSED,
                                     "data": data.closed})]

"""Shopify's `orders/create` webhook mapped to order.placed, then handled like a canonical delivery: how a channel
plugs in with its own signature, idempotency key and payload. The mapping: docs/door.md."""
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError

from config.settings import Settings
from domain.events import Event, EventType, OrderPlaced
from starters.guard import json_depth
from starters.problems import Problem, field_errors
from starters.signatures import SignatureError, shopify_verify
from starters.webhooks import Ingress, read_body

SOURCE = "shopify"
CHANNEL = "shopify"
TOPIC = "orders/create"


class ShopifyDiscountAllocation(BaseModel):
    model_config = ConfigDict(extra="ignore")
    amount: str


class ShopifyLineItem(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: int | str
    sku: str | None = None
    quantity: int
    price: str  # before discounts
    total_discount: str = "0"  # the line's own discounts (older payloads)
    discount_allocations: list[ShopifyDiscountAllocation] = []  # every discount allocated to the line

    def unit_price(self) -> str:
        """The price per unit the customer pays: `price` less the line's discounts, spread over its units and
        rounded down to the cent, so the lines never add up to more than Shopify authorised (`total_price`
        is after discounts; order.placed refuses lines that cost more than the authorization)."""
        try:
            price = Decimal(self.price)
            discount = (sum((Decimal(a.amount) for a in self.discount_allocations), Decimal(0))
                        if self.discount_allocations else Decimal(self.total_discount or "0"))
        except InvalidOperation:
            return self.price  # not a number: order.placed answers the field error
        if discount <= 0 or self.quantity <= 0:
            return self.price
        net = (price * self.quantity - discount) / self.quantity
        return str(max(net, Decimal(0)).quantize(Decimal("0.01"), rounding=ROUND_FLOOR))


class ShopifyNoteAttribute(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    value: str | None = None


class ShopifyOrder(BaseModel):
    """The part of Shopify's order payload retailflow reads."""

    model_config = ConfigDict(extra="ignore")
    id: int | str
    currency: str
    total_price: str
    created_at: datetime | None = None
    line_items: list[ShopifyLineItem]
    note_attributes: list[ShopifyNoteAttribute] = []


def secrets(settings: Settings) -> list[str]:
    out = [settings.shopify_secret.get_secret_value()] if settings.shopify_secret else []
    return out + settings.secrets_for(SOURCE)


def to_order_placed(order: ShopifyOrder) -> dict[str, Any]:
    notes = {a.name: a.value for a in order.note_attributes}
    pickup = notes.get("pickup_location_id")
    return {
        "order_id": str(order.id),
        "channel": CHANNEL,
        "currency": order.currency.upper(),
        "lines": [{"line_id": str(li.id), "sku": li.sku or "", "quantity": li.quantity, "uom": "EA",
                   "unit_price": li.unit_price()} for li in order.line_items],
        "fulfillment": {"mode": "pickup", "location_id": pickup} if pickup else {"mode": "ship"},
        "payment": {"payment_id": f"shopify-{order.id}", "authorized_amount": order.total_price},
    }


async def receive(ingress: Ingress, request: Request) -> JSONResponse:
    settings = ingress.settings
    body = await read_body(request, settings.webhook_max_body_bytes)
    try:
        shopify_verify(request.headers.get("x-shopify-hmac-sha256"), body, secrets(settings))
    except SignatureError as bad:
        raise Problem(401, str(bad), slug="signature") from None
    webhook_id = request.headers.get("x-shopify-webhook-id")
    if not webhook_id or len(webhook_id) > 200:
        raise Problem(400, "missing or too long X-Shopify-Webhook-Id header", slug="bad-request")
    topic = request.headers.get("x-shopify-topic", TOPIC)
    if topic != TOPIC:
        raise Problem(403, f"shopify topic '{topic}' is not accepted (only {TOPIC})", slug="event-not-allowed")
    depth = json_depth(body)
    if depth > settings.http_max_json_depth:
        raise Problem(400, f"the body is nested {depth} levels deep; the limit is {settings.http_max_json_depth}",
                      slug="not-json")
    try:
        order = ShopifyOrder.model_validate_json(body)
    except ValidationError as bad:
        if any(e.get("type") == "json_invalid" for e in bad.errors()):
            raise Problem(400, "the body is not JSON", slug="not-json") from None
        raise Problem(422, "the body is not a Shopify order", slug="validation",
                      errors=field_errors(bad)) from None
    try:
        data = OrderPlaced.model_validate(to_order_placed(order))
    except ValidationError as bad:
        raise Problem(422, "the Shopify order does not map to order.placed", slug="validation",
                      errors=field_errors(bad, ("order.placed",))) from None
    event = Event(event_id=f"shopify-{webhook_id}", type=EventType.ORDER_PLACED,
                  occurred_at=order.created_at or datetime.now(UTC), source=SOURCE, data=data)
    client = await ingress._client()
    return await ingress.deliver(client, SOURCE, webhook_id, event, body)

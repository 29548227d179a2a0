"""A release-3 order's closing shipment, as a release-2 ShipToSettle run receives it (domain.events)."""
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from domain.events import (
    Event,
    EventType,
    OrderClosed,
    OrderShipped,
    Payment,
    PricedLine,
    split_closing_shipment,
)

pytestmark = pytest.mark.unit


def shipped(closed: OrderClosed | None) -> Event:
    return Event(event_id="internal:order:web:1:shipped:S-1", type=EventType.ORDER_SHIPPED,
                 occurred_at=datetime(2026, 12, 1, tzinfo=UTC), source="retailflow",
                 data=OrderShipped(order_id="1", channel="web", shipment_id="S-1", location_id="DC-EAST",
                                   currency="USD", payment=Payment(payment_id="P-1", authorized_amount=Decimal("10")),
                                   lines=[PricedLine(line_id="1", sku="SKU-1", quantity=1, unit_price=Decimal("10"))],
                                   closed=closed))


def test_a_closing_shipment_is_the_shipment_then_the_close_under_the_orders_close_id() -> None:
    close = OrderClosed(order_id="1", channel="web", outcome="fulfilled", shipment_ids=["S-1"])
    first, second = split_closing_shipment(shipped(close))
    assert first.type is EventType.ORDER_SHIPPED and first.data.closed is None
    assert first.event_id == "internal:order:web:1:shipped:S-1"
    assert second.type is EventType.ORDER_CLOSED and second.data == close
    assert second.event_id == "internal:order:web:1:closed"


def test_any_other_event_is_itself() -> None:
    plain = shipped(None)
    assert split_closing_shipment(plain) == [plain]

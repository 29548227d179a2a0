"""The door's order.placed call to Temporal never outlives the request that made it: when the caller stops
waiting (the door's own bound, a shutdown), the update-with-start it started is cancelled with it, and its end
is retrieved. Left running, the SDK kept retrying it, and a shutdown later logged it as an unhandled error."""
import asyncio
from datetime import timedelta

import pytest

from client.dispatch import dispatch
from config.settings import Settings
from domain.events import Event, EventType
from tests.support import event

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]


class HangingClient:
    """A Temporal client whose update-with-start never answers (a server that is down or very slow)."""

    def __init__(self) -> None:
        self.calls: list[asyncio.Task] = []
        self.called = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def execute_update_with_start_workflow(self, *args: object, **kwargs: object) -> None:
        self.calls.append(asyncio.current_task())
        self.called.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


def placed() -> Event:
    return event(EventType.ORDER_PLACED, source="web", data={
        "order_id": "O-HANG", "channel": "web", "currency": "USD",
        "lines": [{"line_id": "1", "sku": "SKU-1", "quantity": 1, "uom": "EA", "unit_price": "10.00"}],
        "fulfillment": {"mode": "ship", "location_id": "DC-1"},
        "payment": {"payment_id": "pay-O-HANG", "authorized_amount": "10.00"},
    })


async def test_a_caller_that_stops_waiting_cancels_the_update_call() -> None:
    client = HangingClient()
    waiting = asyncio.create_task(dispatch(client, placed(), Settings(), decision_timeout=timedelta(seconds=30)))
    await asyncio.wait_for(client.called.wait(), 5)
    waiting.cancel()  # as asyncio.timeout around the door's dispatch, or uvicorn's shutdown, does
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.wait_for(client.cancelled.wait(), 5)
    assert client.calls[0].cancelled()

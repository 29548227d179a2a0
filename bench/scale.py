"""Open processes waiting, and what an event to one of them costs once the worker has evicted it.

The open orders are placed and reserved but never picked: each waits on its `fulfillment.picked` signal and its SLA
timers (the bench sets every SLA to 30 days, so none fires during the run).

Two ways to open them:
- `client`: `client.dispatch.dispatch`, the function the HTTP door calls after its checks: the same event, the same
  update-with-start with the same ProcessInput and start options, straight through the Temporal client. It skips
  the door's HTTP hop, signature check and delivery-idempotency row, which are not what open processes cost, and
  fills several times faster (the bench's default, said so in the results).
- `http`: signed order.placed webhooks through the door, like any order (`bench.latency.place_one`).

An event to an evicted order: `fulfillment.picked` through the door to orders opened long ago (more than
`max_cached_workflows` openings since, so the worker's LRU cache no longer holds them) and, for comparison, to the
orders opened last (still cached). The latency runs from the POST to the completion of the workflow task that took
the signal (its `WorkflowTaskCompleted` event time; server and sender share this machine's clock): for an evicted
order that task includes fetching the history, a new sandbox and the replay.
"""
from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from temporalio.api.enums.v1 import EventType as E
from temporalio.client import Client

from bench.common import percentile
from bench.latency import placed_body
from client.dispatch import dispatch
from config.settings import Settings
from devtools.traffic import Sender
from domain.events import EVENT_DATA, Event, EventType
from domain.ids import order_workflow_id, webhook_event_id

FILL_PATHS = {"client": "update-with-start straight through the Temporal client (client.dispatch.dispatch, the "
                        "door's own call, with the same event and ProcessInput; no HTTP hop, no idempotency row)",
              "http": "signed order.placed webhooks through the HTTP door"}


@dataclass
class OpenOrder:
    channel: str
    order_id: str
    location_id: str
    quantity: int

    @property
    def workflow_id(self) -> str:
        return order_workflow_id(self.channel, self.order_id)


def _reserved(order_id: str, channel: str, decision: dict | None) -> OpenOrder | None:
    if not decision or decision.get("decision") == "rejected":
        return None
    for line in decision.get("lines", []):
        if line.get("reserved_quantity"):
            return OpenOrder(channel, order_id, line["location_id"], line["reserved_quantity"])
    return None


async def open_orders(sender: Sender, client: Client, settings: Settings, count: int, *, path: str = "client",
                      concurrency: int = 48, deadline: float | None = None, prefix: str = "OPEN"
                      ) -> tuple[list[OpenOrder], float]:
    """Place `count` orders that stay open, in the order they opened (stops early at `deadline`, a
    time.monotonic() value). Returns (the reserved orders, orders opened per second)."""
    run = f"{prefix}{uuid.uuid4().hex[:6]}"
    rng = random.Random(count)
    opened: list[OpenOrder] = []
    next_n = 0
    begun = time.perf_counter()

    async def place(order_id: str) -> OpenOrder | None:
        body = placed_body(order_id, rng)
        if path == "http":
            answer = await sender.send("web", "order.placed", body)
            return _reserved(order_id, "web", answer.json().get("decision") if answer.status_code == 200 else None)
        event = Event(event_id=webhook_event_id("web", f"msg_{uuid.uuid4().hex}"), type=EventType.ORDER_PLACED,
                      occurred_at=datetime.now(UTC), source="web",
                      data=EVENT_DATA[EventType.ORDER_PLACED].model_validate(body))
        result = await dispatch(client, event, settings, decision_timeout=settings.order_decision_timeout)
        return _reserved(order_id, "web", result.decision.model_dump(mode="json") if result.decision else None)

    async def worker() -> None:
        nonlocal next_n
        while next_n < count and (deadline is None or time.monotonic() < deadline):
            n = next_n
            next_n += 1
            if (order := await place(f"{run}-{n}")) is not None:
                opened.append(order)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return opened, len(opened) / max(time.perf_counter() - begun, 1e-9)


@dataclass
class EventLatencies:
    samples: list[float]  # seconds
    lost: int = 0  # no workflow task completed after the signal within the wait

    def p(self, q: float) -> float:
        return percentile(self.samples, q) * 1000  # ms

    def as_dict(self) -> dict:
        return {"n": len(self.samples), "lost": self.lost,
                **({f"p{q}_ms": self.p(q) for q in (50, 95, 99)} if self.samples else {})}


async def _task_completed_after_signal(client: Client, workflow_id: str, sent_at: float) -> float:
    """Epoch seconds of the first WorkflowTaskCompleted after the first signal received since `sent_at`."""
    signalled = False
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events(wait_new_event=True):
        at = event.event_time.ToDatetime(tzinfo=UTC).timestamp()
        if event.event_type == E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED and at >= sent_at - 0.001:
            signalled = True
        elif signalled and event.event_type == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            return at
    raise RuntimeError(f"{workflow_id} closed without a workflow task after the signal")


async def event_latency(sender: Sender, client: Client, orders: list[OpenOrder], *, within: float = 60.0
                        ) -> EventLatencies:
    """fulfillment.picked to each of `orders`, one after the other, each timed to the task that applied it."""
    out = EventLatencies(samples=[])
    for order in orders:
        sent_at = time.time()
        await sender.send("wms", "fulfillment.picked", {
            "order_id": order.order_id, "channel": order.channel, "location_id": order.location_id,
            "lines": [{"line_id": "1", "quantity": order.quantity}]})
        try:
            done = await asyncio.wait_for(_task_completed_after_signal(client, order.workflow_id, sent_at), within)
        except (TimeoutError, RuntimeError):
            out.lost += 1
            continue
        out.samples.append(max(done - sent_at, 0.0))
    return out


def evicted_and_cached(opened: list[OpenOrder], used: set[str], cache_size: int, n: int
                       ) -> tuple[list[OpenOrder], list[OpenOrder]]:
    """The `n` oldest orders with more than 1.5 x `cache_size` openings after them (evicted from the worker's
    LRU cache), and the `n` newest (cached); none that an earlier sample already picked."""
    fresh = [o for o in opened if o.order_id not in used]
    evicted = [o for i, o in enumerate(opened) if o.order_id not in used and len(opened) - i > 1.5 * cache_size][:n]
    cached = [o for o in fresh[-n:] if o not in evicted]
    return evicted, cached

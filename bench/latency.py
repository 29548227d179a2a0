"""order.placed decision latency as a channel sees it, against a bare update-with-start with one activity.

Real: the time from POSTing a signed order.placed webhook to its `200` answer carrying the reservation decision
(HTTP, signature check, update-with-start of ReserveToFulfill, the `place` update validating, choosing the source
and reserving in PostgreSQL). Bare: the time of one SDK update-with-start of `BenchBare` whose update runs one
no-op activity (no HTTP, no database), on the same server. `senders` senders each send one order after the other.
The orders placed here stay open (reserved, awaiting pick): they count towards the scale phase's open processes.
"""
from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass

from temporalio.client import Client

from bench.ceiling import bare_place
from bench.common import percentile
from devtools.catalog import DISTRIBUTION_CENTERS, ITEMS
from devtools.traffic import Sender


@dataclass
class Latencies:
    samples: list[float]  # seconds
    non_decisions: int = 0  # answers without a decision (202 past the bound) or errors

    def p(self, q: float) -> float:
        return percentile(self.samples, q) * 1000  # ms


def placed_body(order_id: str, rng: random.Random, channel: str = "web") -> dict:
    item = rng.choice(ITEMS)
    return {"order_id": order_id, "channel": channel, "currency": "USD",
            "lines": [{"line_id": "1", "sku": item.sku, "quantity": 1, "uom": "EA", "unit_price": str(item.price)}],
            "fulfillment": {"mode": "ship", "location_id": rng.choice(DISTRIBUTION_CENTERS)},
            "payment": {"payment_id": f"pay-{order_id}", "authorized_amount": str(item.price)}}


async def place_one(sender: Sender, order_id: str, rng: random.Random) -> tuple[float, bool, bool]:
    """(seconds, answered with a decision, process opened)."""
    begun = time.perf_counter()
    answer = await sender.send("web", "order.placed", placed_body(order_id, rng))
    took = time.perf_counter() - begun
    decided = answer.status_code == 200 and "decision" in answer.json()
    return took, decided, answer.status_code in (200, 202)


async def real_latency(sender: Sender, senders: int, per_sender: int, *, prefix: str = "LAT") -> Latencies:
    run = f"{prefix}{uuid.uuid4().hex[:6]}"
    out = Latencies(samples=[])

    async def one_sender(s: int) -> None:
        rng = random.Random(s)
        for i in range(per_sender):
            took, decided, _ = await place_one(sender, f"{run}-{s}-{i}", rng)
            if decided:
                out.samples.append(took)
            else:
                out.non_decisions += 1

    await asyncio.gather(*(one_sender(s) for s in range(senders)))
    return out


async def bare_latency(client: Client, senders: int, per_sender: int, task_queue: str) -> Latencies:
    run = f"BARE{uuid.uuid4().hex[:6]}"
    out = Latencies(samples=[])

    async def one_sender(s: int) -> None:
        for i in range(per_sender):
            out.samples.append(await bare_place(client, f"bench-bare-{run}-{s}-{i}", task_queue))

    await asyncio.gather(*(one_sender(s) for s in range(senders)))
    return out

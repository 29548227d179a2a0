"""Open processes waiting: orders placed and reserved but not picked, each waiting on its `fulfillment.picked` signal
and on its SLA timers (pick_overdue, ship_overdue, authorization_expiring; the bench sets every SLA to 30 days so
none fires during the run). They are opened through the webhooks like any order (`bench.latency.place_one`).
"""
from __future__ import annotations

import asyncio
import random
import time
import uuid

from bench.latency import place_one
from devtools.traffic import Sender


async def open_orders(sender: Sender, count: int, *, concurrency: int = 24, deadline: float | None = None,
                      prefix: str = "OPEN") -> tuple[int, float]:
    """Place `count` orders that stay open (stops early at `deadline`, a time.monotonic() value).
    Returns (orders opened, opened per second)."""
    run = f"{prefix}{uuid.uuid4().hex[:6]}"
    rng = random.Random(count)
    opened = 0
    next_n = 0
    begun = time.perf_counter()

    async def worker() -> None:
        nonlocal opened, next_n
        while next_n < count and (deadline is None or time.monotonic() < deadline):
            n = next_n
            next_n += 1
            _, _, is_open = await place_one(sender, f"{run}-{n}", rng)
            opened += is_open

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return opened, opened / max(time.perf_counter() - begun, 1e-9)

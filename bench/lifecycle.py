"""Real order lifecycles through the signed HTTP webhooks, at a fixed concurrency.

One lifecycle is `devtools.traffic.order(day, n, "ship")`: order.placed (answered with the decision), picked,
dispatched, delivered, settled, each a signed webhook; it counts as done when both its processes (ReserveToFulfill
and ShipToSettle) have completed. Throughput = lifecycles done / wall time from the first webhook to the last
completion.
"""
from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field

from temporalio.client import Client

from bench.common import at_concurrency
from devtools.traffic import Day, Sender, order
from domain import ids as process_ids

COMPLETE_WITHIN = 300.0  # seconds a lifecycle's processes get to complete after its last webhook


@dataclass
class Lifecycles:
    rate: float
    workflow_ids: list[tuple[str, str]] = field(default_factory=list)  # (order, settle) per lifecycle
    rejected: int = 0


async def one_lifecycle(sender: Sender, client: Client, run: str, n: int, seed: int = 0) -> tuple[str, str] | None:
    day = Day(sender, random.Random(seed * 1_000_003 + n), run)
    expectations = await order(day, n, "ship")
    if len(expectations) < 2:  # rejected (no stock): not a lifecycle
        return None
    ids = (expectations[0].workflow_id, expectations[1].workflow_id)
    await asyncio.wait_for(asyncio.gather(*(client.get_workflow_handle(wid).result() for wid in ids)), COMPLETE_WITHIN)
    return ids


async def run_lifecycles(sender: Sender, client: Client, total: int, concurrency: int, *, seed: int = 0) -> Lifecycles:
    run = f"L{uuid.uuid4().hex[:6]}"
    done: list[tuple[str, str]] = []
    rejected = 0

    async def one(n: int) -> None:
        nonlocal rejected
        ids = await one_lifecycle(sender, client, run, n, seed)
        if ids is None:
            rejected += 1
        else:
            done.append(ids)

    begun = time.perf_counter()
    await at_concurrency(total, concurrency, one)
    elapsed = time.perf_counter() - begun
    return Lifecycles(rate=len(done) / elapsed, workflow_ids=done, rejected=rejected)


class QuiescentSender(Sender):
    """A sender that, after each webhook, waits until the order's processes have done all they do about it (no
    workflow task and no activity outstanding): their histories then show which work followed which message, so
    the skeleton can copy the shape exactly. Used for the one warm-up lifecycle only."""

    client: Client | None = None

    async def send(self, source: str, type: str, data: dict, *, webhook_id: str | None = None):  # noqa: ANN201
        answer = await super().send(source, type, data, webhook_id=webhook_id)
        if self.client is not None and "order_id" in data and "channel" in data:
            wids = [process_ids.order_workflow_id(data["channel"], data["order_id"]),
                    process_ids.settle_workflow_id(data["channel"], data["order_id"])]
            await quiet(self.client, wids)
        return answer


async def quiet(client: Client, workflow_ids: list[str], within: float = 60.0, interval: float = 0.2) -> None:
    """Wait until none of `workflow_ids` has a workflow task or activity outstanding, twice in a row.

    The server's description says both (`pending_workflow_task`, `pending_activities`), so one describe per
    workflow, all at once, is a round; a workflow not started (yet) is quiet."""
    from temporalio.service import RPCError

    async def busy(wid: str) -> bool:
        try:
            raw = (await client.get_workflow_handle(wid).describe()).raw_description
        except RPCError:
            return False  # not started (yet): the settle process opens at dispatch
        return bool(raw.pending_activities) or raw.HasField("pending_workflow_task")

    give_up = time.monotonic() + within
    calm = 0
    while calm < 2 and time.monotonic() < give_up:
        calm = 0 if any(await asyncio.gather(*(busy(wid) for wid in workflow_ids))) else calm + 1
        await asyncio.sleep(interval)

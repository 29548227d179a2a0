"""Housekeeping of the HTTP service's own records, run by the service itself every hour (and once at start-up).

- Delivery records (`webhook_deliveries`) older than `webhook_delivery_retention` (default 30 days) are deleted:
  they exist to answer redeliveries, and a sender's retries end long before (a replay of an old delivery fails
  its signature's 5-minute tolerance anyway). Processes opened without their opening event
  (`unopened_processes`) older than that stop counting against their source too.
- Pending claims older than STALE_CLAIM (an hour; a live claim is answered or removed within seconds) were left
  by a service killed while dispatching whose sender gave up: they are deleted, so the delivery record tells
  the truth (a late redelivery is then a first delivery again, and every dispatch is idempotent).

Why the service and not the reconciliation: these are the door's own records, written only by it; every replica
may sweep (the deletes are idempotent, an advisory lock keeps two from doing the same work at once), and it needs
no workflow change. Deletes go in batches so no statement holds locks for long.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel
from sqlalchemy import text

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("retailflow.housekeeping")

STALE_CLAIM = timedelta(hours=1)
EVERY = timedelta(hours=1)
BATCH = 5_000
_LOCK_ID = 0x72_66_68_6B  # "rfhk"


class Swept(BaseModel):
    deliveries_purged: int = 0
    stale_claims_removed: int = 0
    unopened_expired: int = 0
    skipped: bool = False  # another replica held the sweep


async def _batched(engine: AsyncEngine, sql: str, params: dict) -> int:
    total = 0
    while True:
        async with engine.begin() as conn:
            deleted = (await conn.execute(text(sql), {**params, "batch": BATCH})).rowcount or 0
        total += deleted
        if deleted < BATCH:
            return total


async def sweep(engine: AsyncEngine, retention: timedelta, stale_claim: timedelta = STALE_CLAIM) -> Swept:
    async with engine.connect() as guard:
        if not await guard.scalar(text("SELECT pg_try_advisory_lock(:id)"), {"id": _LOCK_ID}):
            return Swept(skipped=True)
        try:
            return Swept(
                deliveries_purged=await _batched(engine, """
                    DELETE FROM webhook_deliveries WHERE ctid IN (
                        SELECT ctid FROM webhook_deliveries WHERE received_at < now() - CAST(:age AS interval)
                         LIMIT :batch)""", {"age": retention}),
                stale_claims_removed=await _batched(engine, """
                    DELETE FROM webhook_deliveries WHERE ctid IN (
                        SELECT ctid FROM webhook_deliveries
                         WHERE status = 'pending' AND received_at < now() - CAST(:age AS interval) LIMIT :batch)""",
                                                    {"age": stale_claim}),
                unopened_expired=await _batched(engine, """
                    DELETE FROM unopened_processes WHERE ctid IN (
                        SELECT ctid FROM unopened_processes WHERE first_seen < now() - CAST(:age AS interval)
                         LIMIT :batch)""", {"age": retention}),
            )
        finally:
            await guard.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _LOCK_ID})


async def run_periodically(engine: AsyncEngine, retention: timedelta, every: timedelta = EVERY) -> None:
    """Sweep now and then every `every`, until cancelled; a failed sweep is logged and tried again later."""
    while True:
        try:
            swept = await sweep(engine, retention)
            if swept.deliveries_purged or swept.stale_claims_removed or swept.unopened_expired:
                log.info("housekeeping: %s", swept.model_dump())
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - the database may be down; the next round tries again
            log.warning("housekeeping failed: %s", type(err).__name__)
        await asyncio.sleep(every.total_seconds())

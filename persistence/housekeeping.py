"""The sweep of the door's own records: delivery records and unopened processes past their retention, and
claims left pending by a service killed mid-dispatch. One replica at a time (an advisory lock), in batches so
no statement holds locks for long. Why: docs/door.md."""
from datetime import timedelta

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

STALE_CLAIM = timedelta(hours=1)  # a live claim is answered or removed within seconds
BATCH = 5_000
_LOCK_ID = 0x72_66_68_6B  # "rfhk"

_PURGE_DELIVERIES = """
    DELETE FROM webhook_deliveries WHERE ctid IN (
        SELECT ctid FROM webhook_deliveries WHERE received_at < now() - CAST(:age AS interval) LIMIT :batch)"""
_REMOVE_STALE_CLAIMS = """
    DELETE FROM webhook_deliveries WHERE ctid IN (
        SELECT ctid FROM webhook_deliveries
         WHERE status = 'pending' AND received_at < now() - CAST(:age AS interval) LIMIT :batch)"""
_EXPIRE_UNOPENED = """
    DELETE FROM unopened_processes WHERE ctid IN (
        SELECT ctid FROM unopened_processes WHERE first_seen < now() - CAST(:age AS interval) LIMIT :batch)"""


class Swept(BaseModel):
    deliveries_purged: int = 0
    stale_claims_removed: int = 0
    unopened_expired: int = 0
    skipped: bool = False  # another replica held the sweep


async def _batched(engine: AsyncEngine, sql: str, age: timedelta) -> int:
    total = 0
    while True:
        async with engine.begin() as conn:
            deleted = (await conn.execute(text(sql), {"age": age, "batch": BATCH})).rowcount or 0
        total += deleted
        if deleted < BATCH:
            return total


async def sweep(engine: AsyncEngine, retention: timedelta, stale_claim: timedelta = STALE_CLAIM) -> Swept:
    async with engine.connect() as guard:
        if not await guard.scalar(text("SELECT pg_try_advisory_lock(:id)"), {"id": _LOCK_ID}):
            return Swept(skipped=True)
        try:
            return Swept(deliveries_purged=await _batched(engine, _PURGE_DELIVERIES, retention),
                         stale_claims_removed=await _batched(engine, _REMOVE_STALE_CLAIMS, stale_claim),
                         unopened_expired=await _batched(engine, _EXPIRE_UNOPENED, retention))
        finally:
            await guard.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _LOCK_ID})

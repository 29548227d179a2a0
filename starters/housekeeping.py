"""The HTTP service sweeps its own records (persistence.housekeeping) every hour and once at start-up: the
door writes them, so the door cleans them, with no workflow involved."""
import asyncio
import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.housekeeping import sweep

log = logging.getLogger("retailflow.housekeeping")

EVERY = timedelta(hours=1)


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

"""Processes a source opened without their opening event (revision 0009), counted per source so one source
cannot start processes without end: the door admits each one here and clears them when the opening event
comes."""
from sqlalchemy import delete, exists, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.routing import OPENING_EVENTS
from persistence.deliveries import DELIVERIES
from persistence.models import UnopenedProcessRow
from persistence.write_once import write_once

UNOPENED = UnopenedProcessRow.__table__  # type: ignore[attr-defined]
OPENING_TYPES = sorted(str(t) for t in OPENING_EVENTS)


class TooManyUnopened(Exception):
    """The source already has `waiting` processes without their opening event (the door answers 429)."""

    def __init__(self, waiting: int, limit: int) -> None:
        super().__init__(f"{waiting} processes wait for their opening event (limit {limit})")
        self.waiting = waiting
        self.limit = limit


async def admit(engine: AsyncEngine, source: str, workflow_id: str, opener: str, limit: int) -> None:
    """Count `workflow_id` against `source` unless its opener's opening delivery came already (or it is
    counted already); serialised per source, raising TooManyUnopened at `limit`."""
    async with engine.begin() as conn:
        if await conn.scalar(select(exists().where(DELIVERIES.c.workflow_id == opener,
                                                   DELIVERIES.c.type.in_(OPENING_TYPES)))):
            return
        await conn.execute(select(func.pg_advisory_xact_lock(func.hashtext("unopened:" + source))))
        if await conn.scalar(select(exists().where(UNOPENED.c.source == source,
                                                   UNOPENED.c.workflow_id == workflow_id))):
            return
        waiting = await conn.scalar(select(func.count()).select_from(UNOPENED).where(UNOPENED.c.source == source))
        if waiting >= limit:
            raise TooManyUnopened(waiting, limit)
        await write_once(conn, UNOPENED, dict(source=source, workflow_id=workflow_id, opener=opener),
                         what="unopened process", fingerprint_column=None)


async def opened(engine: AsyncEngine, opener: str) -> None:
    """The opening event of `opener` arrived: what waited for it no longer counts against its source."""
    async with engine.begin() as conn:
        await conn.execute(delete(UNOPENED).where(UNOPENED.c.opener == opener))

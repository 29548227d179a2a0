"""Processes a source opened without their opening event (revision 0009), counted per source so one source
cannot start processes without end, and the events each one holds, so one source cannot grow a process that never
opens (its held events and its history) without end either: the door admits each one here, and
`deliveries.answer` clears them when the opening event comes."""
from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.deliveries import DELIVERIES, UNOPENED, opening_delivered
from persistence.write_once import write_once


class TooManyUnopened(Exception):
    """The source already has `waiting` processes without their opening event (the door answers 429)."""

    def __init__(self, waiting: int, limit: int) -> None:
        super().__init__(f"{waiting} processes wait for their opening event (limit {limit})")
        self.waiting = waiting
        self.limit = limit


class TooManyHeld(Exception):
    """The process waits for its opening event and already holds `held` events (the door answers 429)."""

    def __init__(self, held: int, limit: int) -> None:
        super().__init__(f"the process holds {held} events while it waits for its opening event (limit {limit})")
        self.held = held
        self.limit = limit


async def admit(engine: AsyncEngine, source: str, webhook_id: str, workflow_id: str, opener: str, limit: int,
                held_limit: int) -> None:
    """Admit a non-opening delivery to `workflow_id` unless its opener's opening delivery came already: count the
    process against `source` (serialised per source, TooManyUnopened at `limit`) and the delivery against the
    process (serialised per process, TooManyHeld once it holds `held_limit` deliveries). A redelivery of a
    `webhook_id` already recorded is always admitted: its first answer is given again."""
    async with engine.begin() as conn:
        if await conn.scalar(select(opening_delivered(opener))):
            return
        if await conn.scalar(select(exists().where(DELIVERIES.c.source == source,
                                                   DELIVERIES.c.webhook_id == webhook_id))):
            return
        await conn.execute(select(func.pg_advisory_xact_lock(func.hashtext("unopened-held:" + workflow_id))))
        held = await conn.scalar(select(func.count()).select_from(DELIVERIES)
                                 .where(DELIVERIES.c.workflow_id == workflow_id))
        if held >= held_limit:
            raise TooManyHeld(held, held_limit)
        await conn.execute(select(func.pg_advisory_xact_lock(func.hashtext("unopened:" + source))))
        if await conn.scalar(select(exists().where(UNOPENED.c.source == source,
                                                   UNOPENED.c.workflow_id == workflow_id))):
            return
        waiting = await conn.scalar(select(func.count()).select_from(UNOPENED).where(UNOPENED.c.source == source))
        if waiting >= limit:
            raise TooManyUnopened(waiting, limit)
        await write_once(conn, UNOPENED, dict(source=source, workflow_id=workflow_id, opener=opener),
                         what="unopened process", fingerprint_column=None)

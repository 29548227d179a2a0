"""The process registry and the late-event store in PostgreSQL (revision 0006), shared by the activities that
write them, the door that checks a business key before it opens a process, and the read API.

Both are write-once by key: a retried write changes nothing (ON CONFLICT DO NOTHING) and answers whether it
was the first.
"""
import json

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.late import ClosedProcess, LateEventRecord
from persistence.models import LateEventRow, ProcessRegistryRow

REGISTRY = ProcessRegistryRow.__table__  # type: ignore[attr-defined]
LATE_EVENTS = LateEventRow.__table__  # type: ignore[attr-defined]


async def record_closed(engine: AsyncEngine, record: ClosedProcess) -> bool:
    """Enter an ended process; False if it was entered before (a retry)."""
    async with engine.begin() as conn:
        inserted = await conn.scalar(
            insert(REGISTRY).values(**record.model_dump(mode="json", exclude={"closed_at"}),
                                    closed_at=record.closed_at)
            .on_conflict_do_nothing(index_elements=["workflow_id"]).returning(REGISTRY.c.workflow_id))
    return inserted is not None


async def closed_process(engine: AsyncEngine, workflow_id: str) -> ClosedProcess | None:
    """The ended process under this workflow ID (business key), or None while it runs or never existed."""
    async with engine.connect() as conn:
        row = (await conn.execute(select(REGISTRY).where(REGISTRY.c.workflow_id == workflow_id))).mappings().first()
    if row is None:
        return None
    return ClosedProcess.model_validate({k: v for k, v in row.items() if k != "recorded_at"})


async def record_late_event(engine: AsyncEngine, record: LateEventRecord) -> bool:
    """Store a late event; False if this event identity was stored before."""
    values = record.model_dump(mode="json", exclude={"received_at", "payload"})
    async with engine.begin() as conn:
        inserted = await conn.scalar(
            insert(LATE_EVENTS).values(**values, payload=json.loads(json.dumps(record.payload, default=str)),
                                       received_at=record.received_at)
            .on_conflict_do_nothing(index_elements=["event_id"]).returning(LATE_EVENTS.c.event_id))
    return inserted is not None


async def late_events_of(engine: AsyncEngine, process_workflow_id: str) -> list[LateEventRecord]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(LATE_EVENTS).where(LATE_EVENTS.c.process_workflow_id == process_workflow_id)
                                   .order_by(LATE_EVENTS.c.received_at))).mappings().all()
    return [LateEventRecord.model_validate({k: v for k, v in r.items() if k != "stored_at"}) for r in rows]

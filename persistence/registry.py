"""The process registry and the late-event store (revision 0006), each written once by key: the activities
write them, the door and dispatch check a business key against them, the read API answers from them."""
import json

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.late import ClosedProcess, LateEventRecord
from persistence.engine import autocommit
from persistence.models import LateEventRow, ProcessRegistryRow
from persistence.write_once import write_once

REGISTRY = ProcessRegistryRow.__table__  # type: ignore[attr-defined]
LATE_EVENTS = LateEventRow.__table__  # type: ignore[attr-defined]


async def record_closed(engine: AsyncEngine, record: ClosedProcess) -> bool:
    """Enter an ended process; False if it was entered before (a retry)."""
    values = {**record.model_dump(mode="json", exclude={"closed_at"}), "closed_at": record.closed_at}
    async with autocommit(engine) as conn:  # one statement
        return await write_once(conn, REGISTRY, values, what="closed process", fingerprint_column=None) is None


async def closed_process(engine: AsyncEngine, workflow_id: str) -> ClosedProcess | None:
    """The ended process under this workflow ID (business key), or None while it runs or never existed."""
    async with autocommit(engine) as conn:
        row = (await conn.execute(select(REGISTRY).where(REGISTRY.c.workflow_id == workflow_id))).mappings().first()
    if row is None:
        return None
    return ClosedProcess.model_validate({k: v for k, v in row.items() if k != "recorded_at"})


async def record_late_event(engine: AsyncEngine, record: LateEventRecord) -> bool:
    """Store a late event; False if this event identity was stored before."""
    values = {**record.model_dump(mode="json", exclude={"received_at", "payload"}),
              "payload": json.loads(json.dumps(record.payload, default=str)), "received_at": record.received_at}
    async with autocommit(engine) as conn:  # one statement
        return await write_once(conn, LATE_EVENTS, values, what="late event", fingerprint_column=None) is None


async def late_events_of(engine: AsyncEngine, process_workflow_id: str) -> list[LateEventRecord]:
    async with autocommit(engine) as conn:
        rows = (await conn.execute(select(LATE_EVENTS).where(LATE_EVENTS.c.process_workflow_id == process_workflow_id)
                                   .order_by(LATE_EVENTS.c.received_at))).mappings().all()
    return [LateEventRecord.model_validate({k: v for k, v in r.items() if k != "stored_at"}) for r in rows]

"""The exception-case register (revision 0002), kept by the ExceptionCase workflow, read by `GET /exceptions`,
the CLI and the reconciliation so they never scan Temporal. Upserts by exception_id that never move a resolved
case back to open nor lower its escalations (not write-once: a case changes)."""
from typing import Any

from sqlalchemy import Row, and_, func, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.cases import CaseFilter, CaseSnapshot, CaseStatus, Resolution
from persistence.models import ExceptionCaseRow

CASES = ExceptionCaseRow.__table__  # type: ignore[attr-defined]
_READ = [c for c in CASES.columns if c.name not in ("created_at", "updated_at")]
# what a later write of the same case may change (the rest is fixed when the case opens)
_CHANGING = ("status", "severity", "details", "process_run_id", "escalations", "last_escalated_at", "resolved_at",
             "resolved_by", "resolution_note")


def _values(case: CaseSnapshot) -> dict[str, Any]:
    r = case.resolution
    return {
        "exception_id": case.exception_id, "kind": str(case.kind), "status": str(case.status),
        "severity": str(case.severity), "business_key": case.business_key, "channel": case.channel,
        "location_ids": list(case.location_ids), "skus": list(case.skus), "summary": case.summary,
        "details": case.details, "process_workflow_id": case.process_workflow_id,
        "process_run_id": case.process_run_id, "process_type": case.process_type,
        "events_seen": list(case.events_seen), "opened_at": case.opened_at, "deadline": case.deadline,
        "breached_at": case.breached_at, "escalations": case.escalations,
        "last_escalated_at": case.last_escalated_at, "resolved_at": r.resolved_at if r else None,
        "resolved_by": r.resolved_by if r else None, "resolution_note": r.note if r else None,
    }


def _snapshot(row: Row) -> CaseSnapshot:
    m = row._mapping
    resolution = None
    if m["status"] == CaseStatus.RESOLVED and m["resolved_at"] is not None:
        resolution = Resolution(resolved_at=m["resolved_at"], resolved_by=m["resolved_by"] or "",
                                note=m["resolution_note"] or "")
    return CaseSnapshot(
        exception_id=m["exception_id"], kind=m["kind"], status=m["status"], severity=m["severity"],
        business_key=m["business_key"], channel=m["channel"], location_ids=list(m["location_ids"] or []),
        skus=list(m["skus"] or []), summary=m["summary"], details=dict(m["details"] or {}),
        process_workflow_id=m["process_workflow_id"], process_run_id=m["process_run_id"],
        process_type=m["process_type"], events_seen=list(m["events_seen"] or []), opened_at=m["opened_at"],
        deadline=m["deadline"], breached_at=m["breached_at"], escalations=m["escalations"],
        last_escalated_at=m["last_escalated_at"], resolution=resolution,
    )


async def record(engine: AsyncEngine, case: CaseSnapshot) -> bool:
    """Upsert `case`; False when the register kept what it had (resolved already, or a later escalation)."""
    statement = insert(CASES).values(**_values(case), updated_at=func.now())
    statement = statement.on_conflict_do_update(
        index_elements=[CASES.c.exception_id],
        set_={**{c: statement.excluded[c] for c in _CHANGING}, "updated_at": func.now()},
        where=and_(CASES.c.status != CaseStatus.RESOLVED.value,
                   (statement.excluded.status == CaseStatus.RESOLVED.value)
                   | (statement.excluded.escalations >= CASES.c.escalations)))
    async with engine.begin() as conn:
        return bool((await conn.execute(statement)).rowcount)


async def list_cases(engine: AsyncEngine, query: CaseFilter | None = None) -> list[CaseSnapshot]:
    """Cases from the register, oldest opened first (a page: `limit` after `after`)."""
    q = query or CaseFilter()
    statement = select(*_READ).order_by(CASES.c.opened_at, CASES.c.exception_id).limit(q.limit)
    if q.status:
        statement = statement.where(CASES.c.status == str(q.status))
    if q.kind:
        statement = statement.where(CASES.c.kind == str(q.kind))
    if q.business_key:
        statement = statement.where(CASES.c.business_key == q.business_key)
    if q.location_id:
        statement = statement.where(CASES.c.location_ids.any(q.location_id))
    if q.after:
        statement = statement.where(tuple_(CASES.c.opened_at, CASES.c.exception_id) > tuple_(*q.after))
    async with engine.connect() as conn:
        return [_snapshot(row) for row in (await conn.execute(statement)).all()]


async def get_case(engine: AsyncEngine, exception_id: str) -> CaseSnapshot | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(*_READ).where(CASES.c.exception_id == exception_id))).first()
    return _snapshot(row) if row else None


async def open_case_ids(engine: AsyncEngine, kind: str, prefix: str) -> list[str]:
    """The open cases of `kind` whose ID starts with `prefix` (the reconciliation's own cases)."""
    async with engine.connect() as conn:
        rows = await conn.execute(select(CASES.c.exception_id).where(
            CASES.c.kind == kind, CASES.c.status == CaseStatus.OPEN.value,
            func.starts_with(CASES.c.exception_id, prefix)).order_by(CASES.c.exception_id))
        return list(rows.scalars().all())


async def processes_with_open_case(engine: AsyncEngine, workflow_ids: list[str]) -> set[str]:
    """Which of these processes have an open case."""
    if not workflow_ids:
        return set()
    async with engine.connect() as conn:
        rows = await conn.execute(select(CASES.c.process_workflow_id).distinct().where(
            CASES.c.status == CaseStatus.OPEN.value, CASES.c.process_workflow_id.in_(workflow_ids)))
        return set(rows.scalars().all())

"""The exception-case register in PostgreSQL: what `GET /exceptions`, `retailflow exceptions list` and reports
read, so they never scan Temporal.

The `ExceptionCase` workflow is the source of truth and writes here on open, on each escalation and on
resolution. Writes are upserts by exception_id that never move a resolved case back to open and never lower
the escalation count, so an activity retried after a later write (or a write from an older run) changes
nothing it should not.
"""
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from temporalio import activity

from domain.cases import CaseFilter, CaseSnapshot, CaseStatus, Resolution

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

_UPSERT = text("""
INSERT INTO exception_cases (
    exception_id, kind, status, severity, business_key, channel, location_ids, skus, summary, details,
    process_workflow_id, process_run_id, process_type, events_seen, opened_at, deadline, breached_at,
    escalations, last_escalated_at, resolved_at, resolved_by, resolution_note, updated_at)
VALUES (
    :exception_id, :kind, :status, :severity, :business_key, :channel, :location_ids, :skus, :summary,
    CAST(:details AS jsonb), :process_workflow_id, :process_run_id, :process_type, CAST(:events_seen AS jsonb),
    :opened_at, :deadline, :breached_at, :escalations, :last_escalated_at, :resolved_at, :resolved_by,
    :resolution_note, now())
ON CONFLICT (exception_id) DO UPDATE SET
    status = EXCLUDED.status,
    severity = EXCLUDED.severity,
    details = EXCLUDED.details,
    process_run_id = EXCLUDED.process_run_id,
    escalations = EXCLUDED.escalations,
    last_escalated_at = EXCLUDED.last_escalated_at,
    resolved_at = EXCLUDED.resolved_at,
    resolved_by = EXCLUDED.resolved_by,
    resolution_note = EXCLUDED.resolution_note,
    updated_at = now()
WHERE exception_cases.status <> 'resolved'
  AND (EXCLUDED.status = 'resolved' OR EXCLUDED.escalations >= exception_cases.escalations)
""")

_COLUMNS = """exception_id, kind, status, severity, business_key, channel, location_ids, skus, summary, details,
    process_workflow_id, process_run_id, process_type, events_seen, opened_at, deadline, breached_at,
    escalations, last_escalated_at, resolved_at, resolved_by, resolution_note"""


def _params(case: CaseSnapshot) -> dict[str, Any]:
    import json

    r = case.resolution
    return {
        "exception_id": case.exception_id, "kind": str(case.kind), "status": str(case.status),
        "severity": str(case.severity), "business_key": case.business_key, "channel": case.channel,
        "location_ids": list(case.location_ids), "skus": list(case.skus), "summary": case.summary,
        "details": json.dumps(case.details), "process_workflow_id": case.process_workflow_id,
        "process_run_id": case.process_run_id, "process_type": case.process_type,
        "events_seen": json.dumps(case.events_seen), "opened_at": case.opened_at, "deadline": case.deadline,
        "breached_at": case.breached_at, "escalations": case.escalations,
        "last_escalated_at": case.last_escalated_at, "resolved_at": r.resolved_at if r else None,
        "resolved_by": r.resolved_by if r else None, "resolution_note": r.note if r else None,
    }


def _snapshot(row: Any) -> CaseSnapshot:
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


async def record(engine: "AsyncEngine", case: CaseSnapshot) -> bool:
    """Upsert `case`; False when the register kept what it had (the case was resolved there already)."""
    async with engine.begin() as conn:
        result = await conn.execute(_UPSERT, _params(case))
        return bool(result.rowcount)


async def list_cases(engine: "AsyncEngine", query: CaseFilter | None = None) -> list[CaseSnapshot]:
    """Cases from the register, oldest opened first (a page: `limit` after `after`)."""
    q = query or CaseFilter()
    where, params = [], {"limit": q.limit}
    if q.status:
        where.append("status = :status")
        params["status"] = str(q.status)
    if q.kind:
        where.append("kind = :kind")
        params["kind"] = str(q.kind)
    if q.business_key:
        where.append("business_key = :business_key")
        params["business_key"] = q.business_key
    if q.location_id:
        where.append(":location_id = ANY(location_ids)")
        params["location_id"] = q.location_id
    if q.after:
        where.append("(opened_at, exception_id) > (:after_opened, :after_id)")
        params["after_opened"], params["after_id"] = q.after
    sql = f"SELECT {_COLUMNS} FROM exception_cases"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY opened_at, exception_id LIMIT :limit"
    async with engine.connect() as conn:
        rows = (await conn.execute(text(sql), params)).all()
    return [_snapshot(row) for row in rows]


async def get_case(engine: "AsyncEngine", exception_id: str) -> CaseSnapshot | None:
    async with engine.connect() as conn:
        row = (await conn.execute(text(f"SELECT {_COLUMNS} FROM exception_cases WHERE exception_id = :id"),
                                  {"id": exception_id})).first()
    return _snapshot(row) if row else None


class CaseActivities:
    """Activities of the case register (registered by worker/registry.py)."""

    def __init__(self, engine: "AsyncEngine") -> None:
        self.engine = engine

    @activity.defn(name="record_case")
    async def record_case(self, case: CaseSnapshot) -> bool:
        return await record(self.engine, case)

"""The stored reconciliation runs (revision 0004): one row per run with its report, for
`GET /reconciliation/latest`, the staleness finding on /readyz and the next run's incremental window."""
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.reconciliation import ReconciliationReport
from persistence.models import ReconciliationRunRow

RUNS = ReconciliationRunRow.__table__  # type: ignore[attr-defined]


async def store_run(engine: AsyncEngine, report: ReconciliationReport) -> None:
    """Upsert the report by run ID (a retried store writes the same row)."""
    stored = report.model_copy(update={"finished_at": report.finished_at or datetime.now(UTC)})
    statement = insert(RUNS).values(run_id=report.run_id, workflow_id=report.workflow_id, run_at=report.when,
                                    ok=report.ok, discrepancies=len(report.discrepancies),
                                    report=stored.model_dump(mode="json"))
    async with engine.begin() as conn:
        await conn.execute(statement.on_conflict_do_update(index_elements=[RUNS.c.run_id], set_={
            "ok": statement.excluded.ok, "discrepancies": statement.excluded.discrepancies,
            "report": statement.excluded.report, "stored_at": func.now()}))


async def latest_run(engine: AsyncEngine) -> ReconciliationReport | None:
    """The newest stored run (None before the first)."""
    async with engine.connect() as conn:
        report = await conn.scalar(select(RUNS.c.report).order_by(RUNS.c.run_at.desc(), RUNS.c.stored_at.desc())
                                   .limit(1))
    return ReconciliationReport.model_validate(report) if report is not None else None


async def last_run_at(engine: AsyncEngine) -> tuple[datetime | None, datetime]:
    """When the newest run ran (None before the first), and the database's now (to measure its age by)."""
    async with engine.connect() as conn:
        return tuple((await conn.execute(select(func.max(RUNS.c.run_at), func.now()))).one())  # type: ignore[return-value]

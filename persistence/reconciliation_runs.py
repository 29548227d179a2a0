"""The stored reconciliation runs: the newest one, for `GET /reconciliation/latest` and the demo."""
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.reconciliation import ReconciliationReport


async def latest_run(engine: "AsyncEngine") -> ReconciliationReport | None:
    """The newest stored run (None before the first), for `GET /reconciliation/latest`."""
    async with engine.connect() as conn:
        row = (await conn.execute(text(
            "SELECT report FROM reconciliation_runs ORDER BY run_at DESC, stored_at DESC LIMIT 1"))).first()
    return ReconciliationReport.model_validate(row[0]) if row else None

"""Reconciliation activities: check the ledger and journal in one snapshot, find orphaned and uninspected stock
and stale processes, store the run (persistence.reconciliation_runs). Each one: docs/runtime.md."""
import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.checker import ACCRUALS_SQL, ENTITY_INVENTORY_FAST_SQL, ENTITY_INVENTORY_SQL, check_connection
from domain.reconciliation import (
    HELD_BUCKETS,
    SCHEDULE_ID,
    AccountFigure,
    CheckSummary,
    EntityInventory,
    Holding,
    InventoryCheck,
    OrphanHolding,
    ReconciliationReport,
    StaleProcess,
    StaleQuery,
)
from domain.sla import CaseKind
from persistence import cases, reconciliation_runs

DESCRIBE_CONCURRENCY = 20
# Listed at most (a report must stay well under Temporal's payload limit even when something goes badly wrong);
# past the cap the result says `complete=False` and how many there were.
STALE_LIMIT = 200  # per process type
ORPHAN_LIMIT = 200
HOLDINGS_PER_ORPHAN = 50


class InventoryQuery(BaseModel):
    """`full`: every movement and journal line (and the kept totals proved against them). By default a run is
    incremental when an earlier run is stored (see activities.checker.INCREMENTAL_CHECKS)."""

    full: bool = False


# A run re-reads the journal entries written since the previous run less this margin: longer than any
# transaction may stay open (idle_in_transaction_session_timeout and statement_timeout bound them, see
# persistence/engine.py), so an entry committed late with an older `created_at` is still seen.
WINDOW_MARGIN = timedelta(hours=1)
# With no run stored yet, a run checks the entries of this long ago onwards (older ones were written under the
# database's own commit-time guards): so even the first run after an upgrade stays within its activity timeout.
FIRST_WINDOW = timedelta(days=7)


class OrphanQuery(BaseModel):
    buckets: list[str] = list(HELD_BUCKETS)


DESCRIBE_LIMIT = 2_000  # processes described per run at most (the quietest first); the next run goes on


class StaleResult(BaseModel):
    processes: list[StaleProcess]
    complete: bool  # False when a type had more than STALE_LIMIT stale runs (only the first are listed)


class OrphanResult(BaseModel):
    orphans: list[OrphanHolding]
    total: int  # orphaning processes found; more than listed when over ORPHAN_LIMIT
    complete: bool


class OpenCasesQuery(BaseModel):
    prefix: str = f"exception:{SCHEDULE_ID}:"


def _entity_sql(fast: bool = True) -> str:
    return f"{ENTITY_INVENTORY_FAST_SQL if fast else ENTITY_INVENTORY_SQL}\n ORDER BY 1, 2"


def _heartbeat(step: str) -> None:
    """Progress for Temporal (a heartbeat timeout on the activity then notices a stuck run early)."""
    if activity.in_activity():
        activity.heartbeat(step)


# process_holdings is kept by the ledger's trigger (migration 0009): what each process holds, not the ledger.
_HOLDINGS_SQL = """
    SELECT workflow_id, sku, location_id, bucket, quantity
      FROM process_holdings
     WHERE bucket = ANY(:buckets) AND quantity > 0 {extra}
     ORDER BY 1, 3, 2, 4"""

_QUIET_SQL = """
    SELECT workflow_id FROM process_holdings
     WHERE bucket = ANY(:buckets) AND quantity > 0
     GROUP BY workflow_id
    HAVING max(updated_at) < now() - CAST(:quiet AS interval)
     ORDER BY max(updated_at)
     LIMIT :limit"""


async def read_holdings(engine: AsyncEngine, buckets: list[str],
                        workflow_ids: list[str] | None = None) -> list[Holding]:
    """Units each process holds in `buckets`, net of its own movements (only positive holdings)."""
    extra = "AND workflow_id = ANY(:ids)" if workflow_ids is not None else ""
    params: dict[str, object] = {"buckets": buckets}
    if workflow_ids is not None:
        params["ids"] = workflow_ids
    async with engine.connect() as conn:
        rows = (await conn.execute(text(_HOLDINGS_SQL.format(extra=extra)), params)).mappings().all()
    return [Holding(**{k: (int(v) if k == "quantity" else v) for k, v in row.items()}) for row in rows]


async def quiet_holders(engine: AsyncEngine, buckets: list[str], quiet_for: timedelta, limit: int) -> list[str]:
    """Processes holding stock that have not moved any for `quiet_for`, the quietest first."""
    async with engine.connect() as conn:
        rows = await conn.execute(text(_QUIET_SQL), {"buckets": buckets, "quiet": quiet_for, "limit": limit})
        return list(rows.scalars().all())


async def process_status(client: Client, workflow_id: str) -> str:
    """running | completed | failed | ... of the latest run of `workflow_id`, or not_found."""
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return "not_found"
        raise
    return description.status.name.lower() if description.status else "unknown"


_LATE_WITHOUT_CASE_SQL = """
    SELECT le.event_id, le.type, le.process_workflow_id, le.case_id
      FROM late_events le LEFT JOIN exception_cases c ON c.exception_id = le.case_id
     WHERE le.action <> 'record' AND c.exception_id IS NULL AND le.stored_at < now() - interval '5 minutes'
     ORDER BY le.stored_at LIMIT 200"""


class ReconciliationActivities:
    def __init__(self, client: Client, engine: AsyncEngine, *, quiet_for: timedelta = timedelta(0)) -> None:
        self.client = client
        self.engine = engine
        # a process that moved stock more recently than this is taken to be running and is not described
        # (RETAILFLOW_RECONCILIATION_ORPHAN_QUIET_FOR)
        self.quiet_for = quiet_for

    @activity.defn(name="reconcile_check_inventory")
    async def check_inventory(self, query: InventoryQuery) -> InventoryCheck:
        """The invariant checker plus per-entity figures, in one repeatable-read, read-only snapshot."""
        if query.full:
            since = None
        else:  # the first run looks back FIRST_WINDOW; `retailflow check` proves everything on demand
            previous, _ = await reconciliation_runs.last_run_at(self.engine)
            since = (previous - WINDOW_MARGIN) if previous is not None else datetime.now(UTC) - FIRST_WINDOW
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                await conn.execute(text("SET TRANSACTION READ ONLY"))
                if since is None:  # a full scan may take longer than an ordinary statement
                    await conn.execute(text("SET LOCAL statement_timeout = 0"))
                report = await check_connection(conn, since=since, progress=_heartbeat)
                _heartbeat("entities")
                rows = (await conn.execute(text(_entity_sql(fast=since is not None)))).mappings().all()
                entities_known = (await conn.execute(
                    text("SELECT DISTINCT legal_entity FROM locations ORDER BY 1"))).scalars().all()
                accruals = (await conn.execute(text(ACCRUALS_SQL))).all()
        by_entity: dict[str, EntityInventory] = {
            e: EntityInventory(legal_entity=e, units=0, units_at_cost=Decimal(0), journal_balance=Decimal(0))
            for e in entities_known
        }
        for row in rows:
            entity = by_entity.setdefault(row["legal_entity"], EntityInventory(
                legal_entity=row["legal_entity"], units=0, units_at_cost=Decimal(0), journal_balance=Decimal(0)))
            entity.units += int(row["units"])
            entity.units_at_cost += Decimal(row["units_at_cost"])
            entity.journal_balance += Decimal(row["journal_balance"])
            entity.accounts.append(AccountFigure(account=row["account"], units_at_cost=Decimal(row["units_at_cost"]),
                                                 journal_balance=Decimal(row["journal_balance"])))
        late = await self._late_events_without_case()
        for entity_name, account, balance in accruals:
            if entity_name in by_entity and balance:
                by_entity[entity_name].accruals[account] = Decimal(balance)
        return InventoryCheck(
            checked_at=report.checked_at,
            checks=[*(CheckSummary(**c.model_dump()) for c in report.checks), late],
            entities=list(by_entity.values()),
            totals=report.totals,
        )

    async def _late_events_without_case(self) -> CheckSummary:
        """Every event that came after its process ended is recorded, or has a case in the register (allowing
        the case a few minutes to record itself)."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(text(_LATE_WITHOUT_CASE_SQL))).mappings().all()
        return CheckSummary(name="late_events_have_case", description="every late event that needs ops has a case",
                            ok=not rows, violations=len(rows),
                            samples=[{k: str(v) for k, v in r.items()} for r in rows[:20]])

    @activity.defn(name="reconcile_find_orphans")
    async def find_orphans(self, query: OrphanQuery) -> OrphanResult:
        """Holdings of processes that are not running, confirmed by a second read after the describe. Only the
        processes that have held stock without moving any for `quiet_for` are described (one that moves stock
        runs), the quietest first, at most DESCRIBE_LIMIT per run."""
        workflow_ids = sorted(await quiet_holders(self.engine, query.buckets, self.quiet_for, DESCRIBE_LIMIT))
        gate = asyncio.Semaphore(DESCRIBE_CONCURRENCY)
        described = 0

        async def status(workflow_id: str) -> tuple[str, str]:
            nonlocal described
            async with gate:
                found = workflow_id, await process_status(self.client, workflow_id)
            described += 1
            if described % 100 == 0:
                _heartbeat(f"described {described} of {len(workflow_ids)}")
            return found

        statuses = dict(await asyncio.gather(*(status(w) for w in workflow_ids)))
        activity.heartbeat(len(workflow_ids))
        covered = await self._with_open_case([w for w, s in statuses.items() if s != "running"])
        candidates = [w for w, s in statuses.items() if s != "running" and w not in covered]
        if not candidates:
            return OrphanResult(orphans=[], total=0, complete=True)
        confirmed = await read_holdings(self.engine, query.buckets, candidates)
        out: dict[str, OrphanHolding] = {}
        for h in confirmed:
            orphan = out.setdefault(h.workflow_id, OrphanHolding(workflow_id=h.workflow_id,
                                                                 process_status=statuses[h.workflow_id],
                                                                 holdings=[]))
            if len(orphan.holdings) < HOLDINGS_PER_ORPHAN:
                orphan.holdings.append(h)
        listed = list(out.values())[:ORPHAN_LIMIT]
        return OrphanResult(orphans=listed, total=len(out), complete=len(out) <= ORPHAN_LIMIT)

    async def _with_open_case(self, workflow_ids: list[str]) -> set[str]:
        """The ended processes that have an open case telling ops about what they still hold."""
        return await cases.processes_with_open_case(self.engine, workflow_ids)

    @activity.defn(name="reconcile_find_stale_processes")
    async def find_stale_processes(self, query: StaleQuery) -> StaleResult:
        """Open runs of each process type started before now - stale_after (visibility list API)."""
        found: list[StaleProcess] = []
        complete = True
        for workflow_type, stale_after in sorted(query.stale_after.items()):
            cutoff = (query.now - stale_after).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            visibility = (f"WorkflowType = '{workflow_type}' AND ExecutionStatus = 'Running' "
                          f"AND StartTime < '{cutoff}'")
            count = 0
            async for execution in self.client.list_workflows(visibility, limit=STALE_LIMIT):
                count += 1
                found.append(StaleProcess(
                    workflow_id=execution.id, workflow_type=execution.workflow_type,
                    started_at=execution.start_time, age=query.now - execution.start_time, stale_after=stale_after,
                ))
            complete = complete and count < STALE_LIMIT
        return StaleResult(processes=found, complete=complete)

    @activity.defn(name="reconcile_open_cases")
    async def open_reconciliation_cases(self, query: OpenCasesQuery) -> list[str]:
        """Open reconciliation cases in the case register (exception_cases)."""
        return await cases.open_case_ids(self.engine, CaseKind.RECONCILIATION.value, query.prefix)

    @activity.defn(name="reconcile_store_run")
    async def store_run(self, report: ReconciliationReport) -> None:
        await reconciliation_runs.store_run(self.engine, report)

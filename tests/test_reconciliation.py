"""Reconciliation on a real dev server and PostgreSQL: clean runs clean; planted orphans, stale processes and
journal drift are found, each opens ONE case (stable ID across runs) that clears when the discrepancy goes;
the `reconciliation` schedule is created idempotently and its runs store what `latest_run` serves.

The tests of this module share one database and run in order: each leaves the ledger clean behind it."""
import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import (
    Client,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleHandle,
    ScheduleOverlapPolicy,
    WorkflowExecutionStatus,
)
from temporalio.testing import WorkflowEnvironment

from adapters.stub_erp import PostgresErp
from client.schedules import (
    ensure_schedule,
    reconciliation_input,
    run_reconciliation,
)
from config.settings import Settings
from domain.cases import CaseStatus
from domain.inventory import MovementKind
from domain.reconciliation import (
    CaseOutcome,
    DiscrepancyKind,
    ReconciliationInput,
    ReconciliationReport,
    case_id,
)
from domain.sla import CaseKind, Severity
from persistence.engine import create_engine
from persistence.reconciliation_runs import latest_run
from tests import support
from tests.ledger_helpers import line, movement
from tests.support import assert_checker_ok, eventually, seeded, unique
from worker.factory import build_worker
from worker.main import _ensure_reconciliation_schedule
from workflows.exception_case import ExceptionCase
from workflows.reconciliation import Reconciliation
from workflows.return_to_refund import ReturnToRefund
from workflows.transfer import Transfer

FULL_ONLY = {"ledger_totals_match_movements", "journal_totals_match_lines"}
CHECKS = {"no_negative_bucket", "balances_match_ledger", "journal_entries_balanced", "inventory_matches_journal",
          "keys_applied_once", "refunds_within_captures", "returns_within_shipped", "late_events_have_case",
          "journal_accounts_known", "grni_is_a_credit", "vendor_receivable_not_negative",
          "inventory_by_legal_entity", "orphan_holdings", "stale_processes"}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    await seeded(database_url)
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


def settings_for(database_url: str) -> Settings:
    # planted orphans are fresh: describe every holder, however recently it moved stock
    return support.test_settings(database_url=database_url, reconciliation_orphan_quiet_for=timedelta(0))


async def reconcile(client: Client, settings: Settings,
                    input: ReconciliationInput | None = None) -> ReconciliationReport:
    """One run now, on a worker the test runs (cases it opens need the worker too, to record and resolve)."""
    return await asyncio.wait_for(run_reconciliation(client, settings, input=input), timeout=60)


async def a_stocked_sku(engine: AsyncEngine, location_id: str = "DC-EAST") -> str:
    async with engine.connect() as conn:
        return (await conn.execute(text(
            "SELECT sku FROM balances WHERE location_id = :loc AND bucket = 'available' AND quantity > 5 "
            "ORDER BY sku LIMIT 1"), {"loc": location_id})).scalar_one()


async def case_status(client: Client, workflow_id: str) -> WorkflowExecutionStatus | None:
    return (await client.get_workflow_handle(workflow_id).describe()).status


async def listed(client: Client, query: str) -> list[str]:
    return [w.id async for w in client.list_workflows(query)]


async def schedule_ids(client: Client) -> list[str]:
    return [s.id async for s in await client.list_schedules()]


async def new_actions(handle: ScheduleHandle, before: set[str]) -> list[ScheduleActionExecutionStartWorkflow]:
    """The runs the schedule started that are not in `before`."""
    return [a.action for a in (await handle.describe()).info.recent_actions if a.action.workflow_id not in before]


async def test_a_clean_ledger_reconciles_clean(dev_env: WorkflowEnvironment, engine: AsyncEngine,
                                               database_url: str) -> None:
    settings = settings_for(database_url)
    async with build_worker(dev_env.client, engine, settings):
        report = await reconcile(dev_env.client, settings)

        assert report.ok, report.discrepancies
        # the first run is a full one (it also proves the kept totals); later runs are incremental
        assert {c.name for c in report.checks} - FULL_ONLY == CHECKS and all(c.ok for c in report.checks)
        assert not report.discrepancies and not report.orphans and not report.stale_processes
        # every legal entity's figures are shown, not only drifting ones
        entities = {e.legal_entity: e for e in report.entities}
        assert {"RF-EAST", "RF-WEST"} <= set(entities)
        for entity in entities.values():
            assert entity.ok and entity.units > 0 and entity.units_at_cost == entity.journal_balance > 0
            # inventory control's accruals beside it: the opening stock was received against GRNI
            assert entity.accruals["goods_received_not_invoiced"] < 0
        assert report.totals["movements"] > 0

        latest = await latest_run(engine)
        assert latest is not None and latest.run_id == report.run_id and latest.ok
        assert latest.model_dump(exclude={"finished_at"}) == report.model_dump(exclude={"finished_at"})


async def test_journal_drift_is_found_per_legal_entity(dev_env: WorkflowEnvironment, engine: AsyncEngine,
                                                       database_url: str) -> None:
    settings = settings_for(database_url)
    async with build_worker(dev_env.client, engine, settings):
        phantom = unique("phantom")
        async with engine.begin() as conn:  # inventory posted without units, as tests/test_checker.py plants it
            await conn.execute(text(
                "INSERT INTO journal_entries (key, source_key, source_kind, legal_entity, currency, memo) "
                "VALUES (:k, :k, 'manual', 'RF-WEST', 'USD', 'phantom stock')"), {"k": phantom})
            await conn.execute(text("INSERT INTO journal_lines (entry_key, line, account, debit) "
                                    "VALUES (:k, 0, 'inventory', 10)"), {"k": phantom})
            await conn.execute(text("INSERT INTO journal_lines (entry_key, line, account, credit) "
                                    "VALUES (:k, 1, 'shrink', 10)"), {"k": phantom})
        try:
            report = await reconcile(dev_env.client, settings)
            assert not report.ok
            checks = {c.name: c for c in report.checks}
            assert not checks["inventory_matches_journal"].ok and not checks["inventory_by_legal_entity"].ok
            west = next(e for e in report.entities if e.legal_entity == "RF-WEST")
            assert not west.ok and west.journal_balance - west.units_at_cost == 10
            assert next(e for e in report.entities if e.legal_entity == "RF-EAST").ok
            [drift] = report.discrepancies  # one per drifting entity; the checker's own check is not doubled
            assert drift.kind is DiscrepancyKind.INVENTORY_DRIFT and drift.key == "drift:RF-WEST"
            assert drift.case is CaseOutcome.OPENED and drift.case_id == "exception:reconciliation:drift:RF-WEST"
            assert await case_status(dev_env.client, drift.case_id) == WorkflowExecutionStatus.RUNNING
        finally:  # reverse the phantom, so the ledger is clean again for the next tests
            async with engine.begin() as conn:
                await conn.execute(text(
                    "INSERT INTO journal_entries (key, source_key, source_kind, legal_entity, currency, memo) "
                    "VALUES (:k, :k, 'manual', 'RF-WEST', 'USD', 'reverse phantom')"), {"k": f"{phantom}:rev"})
                await conn.execute(text("INSERT INTO journal_lines (entry_key, line, account, credit) "
                                        "VALUES (:k, 0, 'inventory', 10)"), {"k": f"{phantom}:rev"})
                await conn.execute(text("INSERT INTO journal_lines (entry_key, line, account, debit) "
                                        "VALUES (:k, 1, 'shrink', 10)"), {"k": f"{phantom}:rev"})
        await assert_checker_ok(database_url)

        # the drift is gone: the next run is clean and resolves the case it had opened
        report = await reconcile(dev_env.client, settings)
        assert report.ok and report.resolved_cases == [drift.case_id]
        result = await dev_env.client.get_workflow_handle_for(ExceptionCase.run, drift.case_id).result()
        assert result.status == CaseStatus.RESOLVED and result.resolution.resolved_by == "reconciliation"


async def test_orphan_reservations_are_found_and_open_one_case_each(
        dev_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str) -> None:
    client = dev_env.client
    settings = settings_for(database_url)
    async with build_worker(dev_env.client, engine, settings):
        erp = PostgresErp(engine)
        sku = await a_stocked_sku(engine)
        nobody = unique("no-worker")  # processes that exist but no worker runs: they stay open, or we close them
        ghost = f"order:web:{unique('ghost')}"  # never existed
        closed = f"transfer:{unique('closed')}"  # existed, terminated with its units still reserved
        running = f"transfer:{unique('running')}"  # running: its reservation is not an orphan
        # (no input: nobody ever runs them)
        await client.start_workflow(Transfer.run, id=closed, task_queue=nobody)
        await client.get_workflow_handle(closed).terminate("test: closed with units held")
        await client.start_workflow(Transfer.run, id=running, task_queue=nobody)
        holders = {ghost: 2, closed: 1, running: 3}
        for workflow_id, quantity in holders.items():
            await erp.post_movement(movement(f"{workflow_id}:reserve", MovementKind.RESERVE,
                                             line(sku, "DC-EAST", quantity), workflow_id=workflow_id))
        try:
            report = await reconcile(client, settings)
            assert not report.ok
            orphans = {o.workflow_id: o for o in report.orphans}
            assert set(orphans) == {ghost, closed}
            assert orphans[ghost].process_status == "not_found" and orphans[closed].process_status == "terminated"
            assert [(h.sku, h.location_id, h.bucket, h.quantity) for h in orphans[ghost].holdings] == [
                (sku, "DC-EAST", "reserved", 2)]
            found = {d.key: d for d in report.discrepancies}
            assert set(found) == {f"orphan:{ghost}", f"orphan:{closed}"}
            for d in found.values():
                assert d.kind is DiscrepancyKind.ORPHAN_HOLDING and d.case is CaseOutcome.OPENED
                assert d.location_ids == ["DC-EAST"] and d.skus == [sku]
                assert await case_status(client, d.case_id) == WorkflowExecutionStatus.RUNNING
            state = await client.get_workflow_handle(case_id(f"orphan:{ghost}")).query(ExceptionCase.state)
            assert state.kind == CaseKind.RECONCILIATION and state.business_key == ghost
            assert state.process_type == "Reconciliation" and state.severity == Severity.HIGH
            assert state.details["DC-EAST/" + sku + "/reserved"] == "2"

            # found again by the next run: the same case, still open, no second one
            again = await reconcile(client, settings)
            assert {d.key: d.case for d in again.discrepancies} == {
                f"orphan:{ghost}": CaseOutcome.ALREADY_OPEN, f"orphan:{closed}": CaseOutcome.ALREADY_OPEN}
            for d in again.discrepancies:
                assert len([e async for e in client.list_workflows(f"WorkflowId = '{d.case_id}'")]) == 1
        finally:
            for workflow_id, quantity in holders.items():
                await erp.post_movement(movement(f"{workflow_id}:release", MovementKind.RELEASE,
                                                 line(sku, "DC-EAST", quantity), workflow_id=workflow_id))
            await client.get_workflow_handle(running).terminate("test done")
        await assert_checker_ok(database_url)

        cleared = await reconcile(client, settings)
        assert cleared.ok and sorted(cleared.resolved_cases) == sorted(d.case_id for d in found.values())


async def test_a_process_waiting_past_every_deadline_is_found(
        dev_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str) -> None:
    client = dev_env.client
    settings = settings_for(database_url)
    async with build_worker(dev_env.client, engine, settings):
        stuck = f"return:{unique('stuck')}"
        await client.start_workflow(ReturnToRefund.run, id=stuck, task_queue=unique("no-worker"))  # never runs
        try:
            visible = f"WorkflowId = '{stuck}' AND ExecutionStatus = 'Running'"
            await eventually(lambda: listed(client, visible), what=f"{stuck} listed as running")
            # the defaults (38 days for a return) do not call it stale ...
            report = await reconcile(client, settings)
            assert report.ok and not report.stale_processes
            # ... a policy whose deadlines have all passed does
            input = reconciliation_input(settings).model_copy(update={"stale_after": {"ReturnToRefund": timedelta(0)}})
            report = await reconcile(client, settings, input)
            # (other modules' returns may be running on the shared dev server: look at ours)
            [stale] = [s for s in report.stale_processes if s.workflow_id == stuck]
            assert stale.workflow_type == "ReturnToRefund"
            [d] = [d for d in report.discrepancies if d.key == f"stale:{stuck}"]
            assert d.key == f"stale:{stuck}" and d.kind is DiscrepancyKind.STALE_PROCESS and d.case is CaseOutcome.OPENED
        finally:
            await client.get_workflow_handle(stuck).terminate("test done")


def test_stale_thresholds_cover_every_chain_of_clocks() -> None:
    settings = Settings(sla={"pick_overdue": "PT1H"}, sla_by_channel={"pos": {"return_not_received": "P60D"}},
                        exception_escalate_every="PT2H")
    assert reconciliation_input(settings).escalate_every == timedelta(hours=2)
    stale = reconciliation_input(settings).stale_after
    assert set(stale) == {"ReserveToFulfill", "ShipToSettle", "Transfer", "ReturnToRefund", "CountToAdjust",
                          "VendorReturn"}  # a PO has no bound: it waits for its receipts or its close
    assert stale["CountToAdjust"] == timedelta(hours=24 + 1)
    assert stale["VendorReturn"] == timedelta(days=30, hours=1)
    assert stale["Transfer"] == timedelta(hours=24 + 48 + 1)
    assert stale["ReturnToRefund"] == timedelta(days=60 + 3 + 5, hours=1)  # the longest channel wins
    assert stale["ReserveToFulfill"] == timedelta(hours=1 + 24 + 72 + 1, days=6)


async def test_ensure_schedule_is_idempotent_and_its_runs_are_stored(
        dev_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str) -> None:
    client = dev_env.client
    settings = settings_for(database_url)
    await _ensure_reconciliation_schedule(client, settings)  # what `retailflow worker` does at start
    handle = client.get_schedule_handle("reconciliation")
    try:
        await ensure_schedule(client, settings)  # again: no error, the same one schedule
        ids = await eventually(lambda: schedule_ids(client), lambda ids: "reconciliation" in ids,
                               what="the schedule listed")  # the schedule list is eventually consistent
        assert ids.count("reconciliation") == 1
        described = await handle.describe()
        action = described.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert action.workflow == "Reconciliation" and action.id == "reconciliation"
        assert action.task_queue == settings.task_queue
        assert [i.every for i in described.schedule.spec.intervals] == [timedelta(minutes=15)]
        assert described.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP

        # settings change: the next ensure updates it; an ops pause survives it
        await handle.pause(note="ops: maintenance")
        await ensure_schedule(client, settings.model_copy(update={"reconciliation_every": timedelta(minutes=5)}))
        described = await handle.describe()
        assert [i.every for i in described.schedule.spec.intervals] == [timedelta(minutes=5)]
        assert described.schedule.state.paused and described.schedule.state.note == "ops: maintenance"
        await handle.unpause()

        # a run the schedule starts decodes its input, reconciles and is what latest_run serves
        async with build_worker(client, engine, settings):
            # the session's dev server may hold this schedule from an earlier test (test_cli): wait for a new run
            before = {a.action.workflow_id for a in (await handle.describe()).info.recent_actions}
            await handle.trigger(overlap=ScheduleOverlapPolicy.ALLOW_ALL)  # even if an earlier test's run hangs
            recent = await eventually(lambda: new_actions(handle, before), what="a run the trigger started")
            workflow_id = recent[0].workflow_id
            assert workflow_id.startswith("reconciliation-")
            report = await client.get_workflow_handle_for(Reconciliation.run, workflow_id).result()
        assert report.ok
        latest = await latest_run(engine)
        assert latest is not None and latest.workflow_id == workflow_id and latest.ok
    finally:
        await handle.delete()


def test_discrepancy_keys_are_stable_and_one_per_finding() -> None:
    """Pure: the keys (hence case IDs) depend only on what was found, never on the run or the time."""
    from datetime import UTC, datetime
    from decimal import Decimal

    from domain.reconciliation import (
        AccountFigure,
        CheckSummary,
        EntityInventory,
        Holding,
        InventoryCheck,
        OrphanHolding,
        StaleProcess,
        build_report,
    )

    now = datetime(2026, 11, 23, tzinfo=UTC)
    inventory = InventoryCheck(checked_at=now, checks=[
        CheckSummary(name="keys_applied_once", description="d", ok=False, violations=2),
        CheckSummary(name="inventory_matches_journal", description="d", ok=False, violations=1),
        CheckSummary(name="no_negative_bucket", description="d", ok=True, violations=0),
    ], entities=[
        EntityInventory(legal_entity="A", units=3, units_at_cost=Decimal(30), journal_balance=Decimal(31),
                        accounts=[AccountFigure(account="inventory", units_at_cost=Decimal(30),
                                                journal_balance=Decimal(31))]),
        EntityInventory(legal_entity="B", units=1, units_at_cost=Decimal(5), journal_balance=Decimal(5),
                        accounts=[AccountFigure(account="inventory", units_at_cost=Decimal(5),
                                                journal_balance=Decimal(5))]),
    ])
    orphans = [OrphanHolding(workflow_id="order:web:1", process_status="completed", holdings=[
        Holding(workflow_id="order:web:1", sku="S1", location_id="L1", bucket="reserved", quantity=2),
        Holding(workflow_id="order:web:1", sku="S2", location_id="L1", bucket="picked", quantity=1)])]
    stale = [StaleProcess(workflow_id="transfer:9", workflow_type="Transfer", started_at=now,
                          age=timedelta(days=9), stale_after=timedelta(days=3))]
    reports = [build_report(when=now + timedelta(minutes=15 * n), workflow_id=f"reconciliation-{n}", run_id=str(n),
                            inventory=inventory, orphans=orphans, stale=stale) for n in range(2)]
    keys = [[(d.key, d.case_id) for d in r.discrepancies] for r in reports]
    assert keys[0] == keys[1] == [
        ("check:keys_applied_once", "exception:reconciliation:check:keys_applied_once"),
        ("drift:A", "exception:reconciliation:drift:A"),
        ("orphan:order:web:1", "exception:reconciliation:orphan:order:web:1"),
        ("stale:transfer:9", "exception:reconciliation:stale:transfer:9"),
    ]
    orphan = reports[0].discrepancies[2]
    assert orphan.skus == ["S1", "S2"] and orphan.location_ids == ["L1"] and "3 unit(s)" in orphan.summary
    assert not reports[0].ok and {c.name: c.ok for c in reports[0].checks}["inventory_by_legal_entity"] is False

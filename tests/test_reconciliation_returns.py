"""Reconciliation of returns (issue 17 rule 4): units left in `pending_inspection` (a held bucket) with no running
return and no open exception case are orphans; those a running return or an open case covers are not."""
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.reconciliation import OrphanQuery, ReconciliationActivities
from adapters.stub_erp import PostgresErp
from domain.inventory import MovementKind
from tests.ledger_helpers import World, line, movement
from tests.support import assert_checker_ok, unique
from workflows.return_to_refund import ReturnToRefund


async def _open_case_for(engine: AsyncEngine, workflow_id: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO exception_cases (exception_id, kind, status, severity, business_key, location_ids, skus, "
            "summary, details, process_workflow_id, process_run_id, events_seen, opened_at) VALUES (:id, "
            "'inspection_overdue', 'open', 'medium', :wf, '{}', '{}', 'test', '{}', :wf, 'run', '[]', now())"),
            {"id": f"exception:{workflow_id}:inspection_overdue", "wf": workflow_id})


async def test_pending_inspection_without_a_running_return_or_an_open_case_is_found(
        dev_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str) -> None:
    client, erp = dev_env.client, PostgresErp(engine)
    world = await World().create(erp)
    sku = world.skus[0]
    ghost = f"return:{unique('ghost')}"  # gone, units left, nobody told
    covered = f"return:{unique('covered')}"  # gone, units left, but its case is open
    running = f"return:{unique('running')}"  # still running: its units are its own business
    inspected = f"return:{unique('done')}"  # gone, everything inspected
    await client.start_workflow(ReturnToRefund.run, id=running, task_queue=unique("no-worker"))  # never runs
    for workflow_id, quantity in {ghost: 2, covered: 1, running: 3, inspected: 1}.items():
        await erp.post_movement(movement(f"{workflow_id}:return-receipt:0", MovementKind.RETURN_RECEIPT,
                                         line(sku, world.store, quantity), workflow_id=workflow_id))
    await erp.post_movement(movement(f"{inspected}:disposition", MovementKind.DISPOSITION,
                                     line(sku, world.store, 1, to_bucket="available"), workflow_id=inspected))
    await _open_case_for(engine, covered)
    try:
        found = await ActivityEnvironment().run(ReconciliationActivities(client, engine).find_orphans, OrphanQuery())
    finally:
        await client.get_workflow_handle(running).terminate("test done")
    mine = {o.workflow_id: o for o in found.orphans if o.workflow_id in {ghost, covered, running, inspected}}
    assert set(mine) == {ghost}
    assert mine[ghost].process_status == "not_found"
    assert [(h.sku, h.location_id, h.bucket, h.quantity) for h in mine[ghost].holdings] == [
        (sku, world.store, "pending_inspection", 2)]
    await assert_checker_ok(database_url)

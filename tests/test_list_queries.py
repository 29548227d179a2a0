"""The list queries ops use (docs/ops.md), on a dev server: by each custom search attribute of the contract
(BusinessKey, Channel, Stage, LocationIds, Skus, SlaBreached, OpenExceptions) they return exactly the expected
runs. Processes are started through `client.dispatch` by a real worker, on SKUs and locations of their own
(`World`), so attributes shared with other runs (Channel, Stage, ...) are scoped to this test's SKUs.

Also: `devtools.histories.export` writes a running process's history, which replays cleanly.
"""
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.testing import WorkflowEnvironment

from adapters.stub_erp import PostgresErp
from client.dispatch import dispatch
from devtools.histories import export, replay
from domain import ids
from domain.events import Event, EventType
from domain.inventory import MovementKind
from domain.sla import SlaKind
from tests.ledger_helpers import World, line, movement
from tests.support import event, eventually
from tests.support import test_settings as make_settings
from worker.factory import build_worker

pytestmark = pytest.mark.asyncio(loop_scope="session")


def placed(channel: str, order_id: str, sku: str, location_id: str, quantity: int) -> Event:
    return event(EventType.ORDER_PLACED, source=channel, data={
        "order_id": order_id, "channel": channel, "currency": "USD",
        "lines": [{"line_id": "1", "sku": sku, "quantity": quantity, "uom": "EA", "unit_price": "10.00"}],
        "fulfillment": {"mode": "ship", "location_id": location_id},
        "payment": {"payment_id": f"pay-{order_id}", "authorized_amount": str(10 * quantity)},
    })


async def ids_of(env: WorkflowEnvironment, query: str) -> set[str]:
    return {w.id async for w in env.client.list_workflows(query)}


async def test_list_queries_by_each_search_attribute(dev_env: WorkflowEnvironment, engine: AsyncEngine,
                                                     database_url: str, tmp_path) -> None:
    w = await World().create(PostgresErp(engine))
    await PostgresErp(engine).post_movement(movement(w.key("stock"), MovementKind.RECEIPT,
                                                     line(w.skus[0], w.dc, 20), line(w.skus[1], w.dc, 20)))
    # web orders breach pick_overdue quickly; marketplace orders keep the default (4 h)
    settings = make_settings(database_url=database_url,
                             sla_by_channel={"web": {SlaKind.PICK_OVERDUE: timedelta(seconds=2)}})
    p = w.prefix
    web_order, mkt_order, transfer_id = f"A-{p}", f"B-{p}", f"T-{p}"
    web_wf, mkt_wf = ids.order_workflow_id("web", web_order), ids.order_workflow_id("marketplace", mkt_order)
    transfer_wf = ids.transfer_workflow_id(transfer_id)
    case_wf = ids.exception_workflow_id(web_wf, "pick_overdue")

    async with build_worker(dev_env.client, engine, settings):
        await dispatch(dev_env.client, placed("web", web_order, w.skus[0], w.dc, 2), settings)
        await dispatch(dev_env.client, placed("marketplace", mkt_order, w.skus[1], w.dc, 1), settings)
        await dispatch(dev_env.client, event(EventType.TRANSFER_REQUESTED, {
            "transfer_id": transfer_id, "from_location_id": w.dc, "to_location_id": w.store,
            "lines": [{"sku": w.skus[1], "quantity": 3, "uom": "EA"}]}), settings)

        scope = f"Skus IN ('{w.skus[0]}', '{w.skus[1]}')"
        processes = f"{scope} AND WorkflowType != 'ExceptionCase'"
        expectations = {
            # ops: "everything about order web/A-…"
            f"BusinessKey = 'web/{web_order}'": {web_wf, case_wf},
            f"BusinessKey = '{transfer_id}'": {transfer_wf},
            f"Channel = 'web' AND {processes}": {web_wf},
            f"Channel = 'marketplace' AND {scope}": {mkt_wf},
            f"Stage = 'awaiting_pick' AND {scope}": {web_wf, mkt_wf},
            f"Stage = 'requested' AND {scope}": {transfer_wf},
            f"Stage = 'open' AND WorkflowType = 'ExceptionCase' AND {scope}": {case_wf},
            # ops: "everything that touched SKU X" (the SKU's exception cases included)
            f"Skus = '{w.skus[0]}'": {web_wf, case_wf},
            f"Skus = '{w.skus[1]}'": {mkt_wf, transfer_wf},
            # ops: "open exceptions by location"
            f"LocationIds = '{w.store}'": {transfer_wf},
            f"LocationIds = '{w.dc}' AND WorkflowType != 'ExceptionCase'": {web_wf, mkt_wf, transfer_wf},
            f"OpenExceptions > 0 AND LocationIds = '{w.dc}' AND WorkflowType != 'ExceptionCase'": {web_wf},
            # ops: "SLA breached today"
            f"SlaBreached = true AND {processes}": {web_wf},
            f"SlaBreached = false AND {processes}": {mkt_wf, transfer_wf},
            f"SlaBreached = true AND StartTime > '{(datetime.now(UTC) - timedelta(days=1)).isoformat()}' "
            f"AND {processes}": {web_wf},
        }
        for query, expected in expectations.items():  # visibility is eventually consistent
            await eventually(lambda q=query: ids_of(dev_env, q), lambda got, e=expected: got == e, what=query)

        # `retailflow histories export` of a running process: the history replays against today's code
        written = await export(dev_env.client, [web_wf, case_wf], tmp_path)
        assert [p.relative_to(tmp_path).parts[0] for p in written] == ["ReserveToFulfill", "ExceptionCase"]
        assert [o.error for o in await replay(written)] == [None, None]

        # every run says what it is: a static summary from dispatch; current details and described handlers
        handle = dev_env.client.get_workflow_handle(web_wf)
        summary = await (await handle.describe()).static_summary()
        assert summary and f"web/{web_order}" in summary
        # by name: the SDK's built-in metadata query has no method on the workflow class
        metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
        assert w.skus[0] in metadata.current_details  # the lines table, kept current by the process
        handlers = {h.name: h.description for h in [*metadata.definition.signal_definitions,
                                                     *metadata.definition.query_definitions,
                                                     *metadata.definition.update_definitions]}
        for name in ("event", "state", "place", "cancel"):
            assert handlers.get(name), f"{name} has no description"

"""The worker's Prometheus endpoint (`RETAILFLOW_METRICS_PORT`): the SDK runtime's own metrics and the business
counters of `worker.metrics.BusinessMetrics` (processes started / completed by type and outcome, exception cases
opened by kind), after real processes ran on a dev server: a transfer received in full, and an order whose
pick_overdue SLA breached."""
import re
from datetime import timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from adapters.stub_erp import PostgresErp
from client.connect import connect
from client.dispatch import dispatch
from devtools.embedded_postgres import free_port
from domain import ids
from domain.events import EventType
from domain.inventory import MovementKind
from domain.sla import SlaKind
from domain.transfer import TransferStage
from tests.ledger_helpers import World, line, movement
from tests.support import event, eventually
from tests.support import test_settings as make_settings
from worker.factory import build_worker
from worker.main import build_runtime
from worker.metrics import CASES_OPENED, PROCESSES_COMPLETED, PROCESSES_STARTED, BusinessMetrics
from workflows.transfer import Transfer

pytestmark = pytest.mark.asyncio(loop_scope="session")


def sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one sample of `name` (a counter may carry the `_total` suffix) with at least `labels`."""
    total = 0.0
    for match in re.finditer(rf"^{name}(?:_total)?\{{([^}}]*)\}} ([0-9.e+-]+)$", metrics, re.MULTILINE):
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


async def scrape(port: int) -> str:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"http://127.0.0.1:{port}/metrics")).text


async def test_metrics_endpoint_has_sdk_metrics_and_business_counters(dev_env: WorkflowEnvironment,
                                                                      engine: AsyncEngine, database_url: str) -> None:
    w = await World().create(PostgresErp(engine))
    await PostgresErp(engine).post_movement(movement(w.key("stock"), MovementKind.RECEIPT,
                                                     line(w.skus[0], w.dc, 20), line(w.skus[1], w.dc, 20)))
    port = free_port()
    settings = make_settings(database_url=database_url, metrics_port=port,
                             temporal_address=dev_env.client.service_client.config.target_host,
                             sla={SlaKind.PICK_OVERDUE: timedelta(seconds=2)})
    client = await connect(settings, runtime=build_runtime(settings))
    transfer_id, order_id = f"T-{w.prefix}", f"M-{w.prefix}"
    lines = [{"sku": w.skus[0], "quantity": 2}]

    async with build_worker(client, engine, settings, interceptors=[BusinessMetrics()]):
        await dispatch(client, event(EventType.TRANSFER_REQUESTED, {
            "transfer_id": transfer_id, "from_location_id": w.dc, "to_location_id": w.store,
            "lines": [{**lines[0], "uom": "EA"}]}), settings)
        await dispatch(client, event(EventType.TRANSFER_SHIPPED, {"transfer_id": transfer_id, "lines": lines}),
                       settings)
        await dispatch(client, event(EventType.TRANSFER_RECEIVED, {"transfer_id": transfer_id, "lines": lines},
                                     source="pos"), settings)
        await dispatch(client, event(EventType.ORDER_PLACED, {
            "order_id": order_id, "channel": "web", "currency": "USD",
            "lines": [{"line_id": "1", "sku": w.skus[1], "quantity": 1, "uom": "EA", "unit_price": "10.00"}],
            "fulfillment": {"mode": "ship", "location_id": w.dc},
            "payment": {"payment_id": f"pay-{order_id}", "authorized_amount": "10.00"}}), settings)
        result = await client.get_workflow_handle_for(Transfer.run, ids.transfer_workflow_id(transfer_id)).result()
        assert result.stage == TransferStage.RECEIVED

        def ready(text: str) -> bool:
            return (sample(text, PROCESSES_COMPLETED, workflow_type="Transfer", outcome="received") >= 1
                    and sample(text, CASES_OPENED, kind="pick_overdue") >= 1)

        metrics = await eventually(lambda: scrape(port), ready, what="the counters of both processes", every=0.5)

    # the SDK runtime's own metrics
    for name in ("temporal_request", "temporal_workflow_completed", "temporal_activity_execution_latency",
                 "temporal_workflow_task_execution_latency"):
        assert re.search(rf"^{name}", metrics, re.MULTILINE), f"{name} missing from /metrics"
    # the business counters
    assert sample(metrics, PROCESSES_STARTED, workflow_type="Transfer") >= 1
    assert sample(metrics, PROCESSES_STARTED, workflow_type="ReserveToFulfill") >= 1
    assert sample(metrics, PROCESSES_STARTED, workflow_type="ExceptionCase") >= 1
    assert sample(metrics, PROCESSES_COMPLETED, workflow_type="Transfer", outcome="received") >= 1
    assert sample(metrics, CASES_OPENED, kind="pick_overdue") >= 1

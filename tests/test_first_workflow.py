"""A first workflow end to end through the real worker (`build_worker`: its sandbox, passthrough modules and
activity list) on the dev server, with pydantic models crossing the wire both ways (the pydantic converter).

The workflow is defined here: it exercises only the foundation (client, converter, worker, search attributes,
the process log), not a retail process.
"""
import io
import json
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes

# The workflow below is defined in this module, so the sandbox re-imports it per run: what it imports besides
# the workflow API is passed through (tests.support pulls in the whole client and database stack).
with workflow.unsafe.imports_passed_through():
    from client.names import BUSINESS_KEY, STAGE
    from tests import support
    from workflows.parts import ProcessLog


class Greeting(BaseModel):
    name: str
    amount: Decimal
    at: datetime


class Receipt(BaseModel):
    message: str
    doubled: Decimal
    at: datetime
    workflow_id: str


@activity.defn(name="first_workflow_double")
async def double(greeting: Greeting) -> Decimal:
    return greeting.amount * 2


@workflow.defn(name="FirstWorkflow")
class FirstWorkflow:
    @workflow.run
    async def run(self, greeting: Greeting) -> Receipt:
        ProcessLog(greeting.name).info("first workflow", amount=str(greeting.amount))
        doubled = await workflow.execute_activity(double, greeting, start_to_close_timeout=timedelta(seconds=10))
        workflow.upsert_search_attributes([STAGE.value_set("done")])
        return Receipt(message=f"hello {greeting.name}", doubled=doubled, at=greeting.at,
                       workflow_id=workflow.info().workflow_id)


async def test_first_workflow_runs_through_the_real_worker(dev_env, database_url):
    from persistence.engine import create_engine
    from worker.factory import build_worker
    from worker.registry import WORKFLOWS, activities

    client = dev_env.client
    settings = support.test_settings(database_url=database_url)
    engine = create_engine(database_url, pool_size=2, max_overflow=0)
    worker = build_worker(client, engine, settings, workflows=[*WORKFLOWS, FirstWorkflow],
                          activities=[*activities(client, engine, settings), double])
    key = support.unique("first")
    at = datetime(2026, 11, 23, 12, 30, tzinfo=UTC)
    from config.logging import configure_logging

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    configure_logging(level="INFO", log_format="json", stream=stream, service="test")
    try:
        async with worker:
            handle = await client.start_workflow(
                FirstWorkflow.run, Greeting(name=key, amount=Decimal("10.25"), at=at), id=f"first:{key}",
                task_queue=settings.task_queue,
                search_attributes=TypedSearchAttributes([SearchAttributePair(BUSINESS_KEY, key)]))
            receipt = await handle.result()
            description = await handle.describe()
    finally:
        await engine.dispose()
        root.handlers[:], _ = saved
        root.setLevel(saved[1])

    assert isinstance(receipt, Receipt)
    assert receipt == Receipt(message=f"hello {key}", doubled=Decimal("20.50"), at=at, workflow_id=f"first:{key}")
    assert description.typed_search_attributes[BUSINESS_KEY] == key
    assert description.typed_search_attributes[STAGE] == "done"

    # the workflow's own log line went through the one stream, with its identity lifted into keys
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    (line,) = [x for x in lines if x["event"] == "first workflow"]
    assert line["workflow_id"] == f"first:{key}" and line["business_key"] == key
    assert line["workflow_type"] == "FirstWorkflow" and line["run_id"] and line["amount"] == "10.25"

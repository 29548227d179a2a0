"""The read API through HTTP: bearer tokens, process state by query, stock and master data from the database,
exception cases, the reconciliation's latest run, all errors as problem+json."""
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from client.correlation import CorrelationInterceptor
from devtools.catalog import ITEMS, LOCATIONS, opening_quantity
from domain.ids import webhook_event_id
from domain.late import ClosedProcess
from persistence.engine import create_engine
from persistence.registry import record_closed
from starters.api import create_app
from tests.support import example, seeded
from tests.support import test_settings as make_settings
from tests.test_webhooks import SECRET, STANDS, TOKEN, echo_correlation, post, unique_keys

AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def settings(database_url: str):
    return make_settings(database_url=database_url, api_tokens=["other-token", TOKEN],
                         webhook_secrets={"wms": SECRET, "web": SECRET})


@pytest.fixture
async def api(dev_env, settings, database_url):
    await seeded(database_url)
    engine = create_engine(database_url, pool_size=5, max_overflow=5)
    worker = Worker(dev_env.client, task_queue=settings.task_queue, workflows=STANDS, activities=[echo_correlation],
                    workflow_runner=UnsandboxedWorkflowRunner(), interceptors=[CorrelationInterceptor()])
    app = create_app(settings, engine=engine, client=dev_env.client)
    async with worker:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rf") as http:
            yield http
    await engine.dispose()


def _problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return response.json()


async def test_a_bearer_token_is_required(api) -> None:
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "Basic dXNlcjpwdw=="}):
        response = await api.get("/items", headers=headers)
        _problem(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
    assert (await api.get("/items", headers={"authorization": "Bearer other-token"})).status_code == 200
    # health and the OpenAPI document are open
    assert (await api.get("/healthz")).status_code == 200
    assert (await api.get("/openapi.json")).status_code == 200


async def test_items_and_locations(api) -> None:
    items = (await api.get("/items", headers=AUTH)).json()
    assert {i["sku"] for i in items} == {i.sku for i in ITEMS}
    mug = (await api.get("/items/HOM-MUG-SAND", headers=AUTH)).json()
    assert mug["units"] == {"EA": 1, "CASE": 12} and mug["unit_cost"] == "2.20"
    _problem(await api.get("/items/NO-SUCH-SKU", headers=AUTH), 404)
    locations = (await api.get("/locations", headers=AUTH)).json()
    assert {(loc["location_id"], loc["kind"], loc["legal_entity"]) for loc in locations} == {
        (loc.location_id, str(loc.kind), loc.legal_entity) for loc in LOCATIONS}


async def test_inventory_has_every_location_and_bucket_in_base_units(api) -> None:
    sku = "APP-TEE-WHT-M"
    answer = (await api.get(f"/inventory/{sku}", headers=AUTH)).json()
    assert answer["sku"] == sku and answer["unit"] == "EA"
    by_location = {row["location_id"]: row["buckets"] for row in answer["locations"]}
    assert set(by_location) == {loc.location_id for loc in LOCATIONS}
    index = next(i for i, item in enumerate(ITEMS) if item.sku == sku)
    for loc in LOCATIONS:
        buckets = by_location[loc.location_id]
        assert set(buckets) == {"available", "reserved", "picked", "in_transit", "pending_inspection", "damaged",
                                "vendor_return"}
        # nothing in this module moves stock: the opening stock, all available
        assert buckets == {**dict.fromkeys(buckets, 0), "available": opening_quantity(ITEMS[index], loc, index)}
    _problem(await api.get("/inventory/NO-SUCH-SKU", headers=AUTH), 404)
    bad = _problem(await api.get("/inventory/bad%20sku!", headers=AUTH), 422)
    assert bad["errors"][0]["field"] == "path.sku"


async def test_process_state_by_query(api, dev_env) -> None:
    keys = unique_keys("transfer.requested")
    started = await post(api, "wms", example("transfer.requested", **keys))
    assert started.status_code == 202
    state = (await api.get(f"/transfers/{keys['transfer_id']}", headers=AUTH)).json()
    assert state["workflow_id"] == f"transfer:{keys['transfer_id']}"
    assert state["events"] == [webhook_event_id("wms", started.request.headers["webhook-id"])]

    order = unique_keys("order.placed")
    placed = await post(api, "web", example("order.placed", **order))
    assert placed.status_code == 200
    state = (await api.get(f"/orders/web/{order['order_id']}", headers=AUTH)).json()
    assert state["workflow_id"] == f"order:web:{order['order_id']}" and state["placements"] == 1

    for path in (f"/orders/web/{uuid.uuid4().hex}", f"/transfers/{uuid.uuid4().hex}",
                 f"/returns/{uuid.uuid4().hex}", f"/orders/web/{uuid.uuid4().hex}/settlement"):
        problem = _problem(await api.get(path, headers=AUTH), 404)
        assert "no process" in problem["detail"]


async def test_an_ended_process_is_read_from_the_registry_after_retention(api, database_url) -> None:
    """Temporal has no such workflow (retention passed); the registry answers with the final state."""
    transfer_id = f"T-{uuid.uuid4().hex[:8]}"
    engine = create_engine(database_url)
    try:
        await record_closed(engine, ClosedProcess(
            workflow_id=f"transfer:{transfer_id}", run_id="r1", workflow_type="Transfer", business_key=transfer_id,
            outcome="received", stage="received", closed_at=datetime(2026, 1, 2, tzinfo=UTC),
            state={"stage": "received", "lines": [{"sku": "SKU-1", "received": 2}]}))
    finally:
        await engine.dispose()
    state = (await api.get(f"/transfers/{transfer_id}", headers=AUTH)).json()
    assert state["stage"] == "received" and state["lines"] == [{"sku": "SKU-1", "received": 2}]
    assert (state["workflow_id"], state["outcome"], state["late_events"]) == (f"transfer:{transfer_id}", "received", [])
    assert state["closed_at"].startswith("2026-01-02")


async def test_exceptions_and_reconciliation(api) -> None:
    listed = await api.get("/exceptions", params={"status": "open"}, headers=AUTH)
    assert listed.status_code == 200 and listed.json() == {"cases": [], "next_cursor": None}
    assert (await api.get("/exceptions", params={"status": "resolved"}, headers=AUTH)).json()["cases"] == []
    _problem(await api.get("/exceptions", params={"status": "sideways"}, headers=AUTH), 422)
    missing = await api.post(f"/exceptions/exception:order:web:{uuid.uuid4().hex}:pick_overdue/resolve",
                             json={"note": "called the store", "resolved_by": "ops"}, headers=AUTH)
    _problem(missing, 404)
    _problem(await api.post("/exceptions/x/resolve", json={"resolved_by": "ops"}, headers=AUTH), 422)
    problem = _problem(await api.get("/reconciliation/latest", headers=AUTH), 404)
    assert problem["detail"] == "no reconciliation run yet"

"""Webhooks into the real processes (build_worker, PostgreSQL stubs, a dev server for update-with-start):
every event type of the contract through HTTP, and the same order.placed delivered 20 times at once making one
process and one set of ledger movements."""
import asyncio
import json
import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import text
from temporalio.client import Client

from client.correlation import CorrelationInterceptor
from devtools.catalog import ITEMS, LOCATIONS, opening_quantity
from persistence.engine import create_engine
from starters.api import create_app
from starters.signatures import sign_headers
from tests.support import assert_checker_ok, at_stage, example, read_until, seeded
from tests.support import test_settings as make_settings
from worker.factory import build_worker

SECRET = "whsec_" + "ZTJlLXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVm"
TOKEN = "e2e-token"


@pytest.fixture(scope="module")
def settings(database_url: str):
    return make_settings(
        database_url=database_url,
        webhook_secrets={s: SECRET for s in ("web", "marketplace", "pos", "wms", "carrier", "payments")},
        api_tokens=[TOKEN], order_decision_timeout=timedelta(seconds=20),
    )


@pytest.fixture
async def http(dev_env, settings, database_url):
    await seeded(database_url)
    engine = create_engine(database_url, pool_size=10, max_overflow=30)
    cfg = dev_env.client.config()
    cfg["interceptors"] = [CorrelationInterceptor()]
    client = Client(**cfg)
    worker = build_worker(client, engine, settings)
    app = create_app(settings, engine=engine, client=client)
    async with worker:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rf",
                                     timeout=60) as http:
            http.engine = engine  # type: ignore[attr-defined]
            yield http
    await engine.dispose()


async def send(http: httpx.AsyncClient, source: str, b: dict, webhook_id: str | None = None) -> httpx.Response:
    raw = json.dumps(b).encode()
    headers = {"content-type": "application/json",
               **sign_headers(SECRET, webhook_id or f"msg_{uuid.uuid4().hex}", raw)}
    return await http.post(f"/webhooks/{source}", content=raw, headers=headers)


def in_stock_at(location_id: str, units: int) -> str:
    location = next(loc for loc in LOCATIONS if loc.location_id == location_id)
    return next(item.sku for index, item in enumerate(ITEMS) if opening_quantity(item, location, index) >= units)


async def test_every_event_type_through_http_into_its_process(http, database_url) -> None:
    tag = uuid.uuid4().hex[:8]
    order, pickup, cancelled = f"EX-{tag}", f"PU-{tag}", f"CX-{tag}"
    transfer, ret = f"TR-{tag}", f"RT-{tag}"

    # ship order: placed (decision), picked, dispatched, delivered, settled
    placed = await send(http, "web", example("order.placed", order_id=order))
    assert placed.status_code == 200, placed.text
    assert placed.json()["decision"] == "reserved" and placed.json()["workflow_id"] == f"order:web:{order}"
    lines = {line["line_id"]: line for line in placed.json()["lines"]}
    location = lines["1"]["location_id"]
    picked = await send(http, "wms", example("fulfillment.picked", order_id=order, location_id=location,
                                          lines=[{"line_id": k, "quantity": v["reserved_quantity"]}
                                                 for k, v in lines.items()]))
    assert picked.status_code == 202 and picked.json() == {"status": "signalled", "workflow_id": f"order:web:{order}"}
    await read_until(http, f"/orders/web/{order}", at_stage("awaiting_dispatch"), token=TOKEN)
    shipment = f"SH-{tag}"
    dispatched = await send(http, "wms", example("shipment.dispatched", order_id=order, shipment_id=shipment,
                                              location_id=location,
                                              lines=[{"line_id": k, "quantity": v["reserved_quantity"]}
                                                     for k, v in lines.items()]))
    assert dispatched.status_code == 202 and dispatched.json()["status"] == "signalled"
    state = await read_until(http, f"/orders/web/{order}", at_stage("fulfilled"), token=TOKEN)
    assert [s["shipment_id"] for s in state["shipments"]] == [shipment]
    delivered = await send(http, "carrier", example("shipment.delivered", order_id=order, shipment_id=shipment))
    assert delivered.status_code == 202 and delivered.json()["workflow_id"] == f"settle:web:{order}"
    settled = await send(http, "payments", example("payment.settled", order_id=order, payment_id="pay_EX-1001"))
    assert settled.status_code == 202 and settled.json()["workflow_id"] == f"settle:web:{order}"
    await read_until(http, f"/orders/web/{order}/settlement", at_stage("settled"), token=TOKEN)

    # a cancelled order
    assert (await send(http, "web", example("order.placed", order_id=cancelled))).status_code == 200
    cancel = await send(http, "web", example("order.cancelled", order_id=cancelled))
    assert cancel.status_code == 202 and cancel.json() == {"status": "signalled",
                                                          "workflow_id": f"order:web:{cancelled}"}
    await read_until(http, f"/orders/web/{cancelled}", at_stage("cancelled"), token=TOKEN)

    # a pickup order collected in the store
    sku = in_stock_at("ST-NYC", 1)
    pickup_body = example("order.placed", order_id=pickup, channel="pos",
                       lines=[{"line_id": "1", "sku": sku, "quantity": 1, "uom": "EA", "unit_price": "10.00"}],
                       fulfillment={"mode": "pickup", "location_id": "ST-NYC"},
                       payment={"payment_id": f"pay-{pickup}", "authorized_amount": "10.00"})
    decided = await send(http, "pos", pickup_body)
    assert decided.status_code == 200 and decided.json()["decision"] == "reserved", decided.text
    assert (await send(http, "pos", example("fulfillment.picked", order_id=pickup, channel="pos", location_id="ST-NYC",
                                         lines=[{"line_id": "1", "quantity": 1}]))).status_code == 202
    await read_until(http, f"/orders/pos/{pickup}", at_stage("awaiting_collection"), token=TOKEN)
    collected = await send(http, "pos", example("order.collected", order_id=pickup, channel="pos"))
    assert collected.status_code == 202 and collected.json()["workflow_id"] == f"order:pos:{pickup}"
    await read_until(http, f"/orders/pos/{pickup}", at_stage("fulfilled"), token=TOKEN)

    # a transfer
    requested = await send(http, "wms", example("transfer.requested", transfer_id=transfer))
    assert requested.status_code == 202 and requested.json() == {"status": "started",
                                                                 "workflow_id": f"transfer:{transfer}"}
    for type_ in ("transfer.shipped", "transfer.received"):
        answer = await send(http, "wms", example(type_, transfer_id=transfer))
        assert answer.status_code == 202 and answer.json()["workflow_id"] == f"transfer:{transfer}", answer.text
    await read_until(http, f"/transfers/{transfer}", at_stage("received"), token=TOKEN)

    # a return of the shipped order
    authorized = await send(http, "web", example("return.authorized", return_id=ret, order_id=order))
    assert authorized.status_code == 202 and authorized.json() == {"status": "started",
                                                                   "workflow_id": f"return:{ret}"}
    for source, type_ in (("wms", "return.received"), ("wms", "return.inspected"), ("payments", "refund.settled")):
        answer = await send(http, source, example(type_, return_id=ret))
        assert answer.status_code == 202 and answer.json()["workflow_id"] == f"return:{ret}", answer.text
    await read_until(http, f"/returns/{ret}", at_stage("refunded"), token=TOKEN)

    await assert_checker_ok(database_url)


async def test_the_same_order_delivered_20_times_at_once_is_one_process(http, database_url) -> None:
    order = f"EX-{uuid.uuid4().hex[:8]}"
    raw = json.dumps(example("order.placed", order_id=order)).encode()
    headers = {"content-type": "application/json", **sign_headers(SECRET, f"msg_{uuid.uuid4().hex}", raw)}
    answers = await asyncio.gather(*[http.post("/webhooks/web", content=raw, headers=headers) for _ in range(20)])
    assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
    assert all(a.json() == answers[0].json() for a in answers)
    decision = answers[0].json()
    assert decision["decision"] == "reserved"
    workflow_id = f"order:web:{order}"
    async with http.engine.connect() as conn:  # type: ignore[attr-defined]
        runs = (await conn.execute(text(
            "SELECT DISTINCT run_id FROM movements WHERE workflow_id = :wf"), {"wf": workflow_id})).all()
        reserved = (await conn.execute(text(
            "SELECT sku, location_id, sum(delta) FROM movements WHERE workflow_id = :wf AND bucket = 'reserved' "
            "GROUP BY sku, location_id ORDER BY sku"), {"wf": workflow_id})).all()
        deliveries = await conn.scalar(text(
            "SELECT count(*) FROM webhook_deliveries WHERE workflow_id = :wf"), {"wf": workflow_id})
    assert len(runs) == 1  # one process run moved stock
    ordered = {line["sku"]: line["quantity"] for line in example("order.placed")["data"]["lines"]}
    assert {sku: qty for sku, _, qty in reserved} == ordered  # reserved once, not 20 times
    assert deliveries == 1
    await assert_checker_ok(database_url)

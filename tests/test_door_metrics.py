"""The door's metrics (starters/door_metrics.py), read from the HTTP service's own metrics endpoint after good,
duplicate, unsigned, refused, late and unavailable deliveries through the real app and a real worker on the dev
server: each is counted under its labels."""
import asyncio
import json
import re
import uuid
from datetime import timedelta

import httpx
import pytest
from temporalio.client import Client

from client.correlation import CorrelationInterceptor
from devtools.embedded_postgres import free_port
from persistence.engine import create_engine
from starters import door_metrics
from starters.api import create_app
from starters.signatures import sign_headers
from starters.webhooks import TemporalUnavailable
from tests.support import example, seeded
from tests.support import test_settings as make_settings
from worker.factory import build_worker

pytestmark = pytest.mark.asyncio(loop_scope="session")

SECRET = "whsec_" + "ZTJlLXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVm"


def sample(metrics: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when there is none)."""
    total = 0.0
    for match in re.finditer(rf"^{name}\{{([^}}]*)\}} ([0-9.e+-]+)$", metrics, re.MULTILINE):
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def body(type_: str, **data: object) -> bytes:
    return json.dumps(example(type_, **data)).encode()


async def post(http: httpx.AsyncClient, source: str, raw: bytes, webhook_id: str | None = None, *,
               signed: bool = True) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if signed:
        headers.update(sign_headers(SECRET, webhook_id or f"msg_{uuid.uuid4().hex}", raw))
    return await http.post(f"/webhooks/{source}", content=raw, headers=headers)


async def scrape(port: int) -> str:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    return response.text


async def test_each_kind_of_delivery_is_counted_under_its_labels(dev_env, database_url) -> None:
    await seeded(database_url)
    settings = make_settings(database_url=database_url, order_decision_timeout=timedelta(seconds=20),
                             webhook_secrets={s: SECRET for s in ("web", "pos", "wms")})
    engine = create_engine(database_url)
    config = dev_env.client.config()
    config["interceptors"] = [CorrelationInterceptor()]
    client = Client(**config)
    app = create_app(settings, engine=engine, client=client)
    port = free_port()
    server = door_metrics.serve(app.state.door_metrics, "127.0.0.1", port)
    assert server is not None
    tag = uuid.uuid4().hex[:8]
    try:
        async with build_worker(client, engine, settings):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rf",
                                         timeout=60) as http:
                # good, then the same delivery again (a duplicate answers the first decision)
                order = body("order.placed", order_id=f"DM-{tag}")
                first = await post(http, "web", order, "msg_good_" + tag)
                again = await post(http, "web", order, "msg_good_" + tag)
                assert first.status_code == again.status_code == 200 and first.json() == again.json()
                # unsigned
                assert (await post(http, "web", order, signed=False)).status_code == 401
                # refused: an event type the source may not send; a webhook-id reused with another body
                assert (await post(http, "wms", body("order.placed", order_id=f"DW-{tag}"))).status_code == 403
                reused = await post(http, "web", body("order.placed", order_id=f"DX-{tag}"), "msg_good_" + tag)
                assert reused.status_code == 409
                # an unknown source: counted, but under `unknown` (no label per made-up path)
                assert (await post(http, f"nobody-{tag}", order)).status_code == 404
                # late: an event for a process that has ended (an order rejected for an unknown SKU)
                rejected_id = f"DR-{tag}"
                rejected = await post(http, "web", body("order.placed", order_id=rejected_id, lines=[
                    {"line_id": "1", "sku": "NO-SUCH-SKU", "quantity": 1, "uom": "EA", "unit_price": "1.00"}]))
                assert rejected.json()["decision"] == "rejected", rejected.text
                await asyncio.wait_for(client.get_workflow_handle(f"order:web:{rejected_id}").result(), 60)
                late = await post(http, "web", body("order.cancelled", order_id=rejected_id))
                assert late.status_code == 202 and late.json()["status"] == "late", late.text
        metrics = await scrape(port)
    finally:
        server.shutdown()
        await engine.dispose()

    deliveries = "retailflow_webhook_deliveries_total"
    assert sample(metrics, deliveries, source="web", event_type="order.placed", code="200") == 3  # good, dup, rejected
    assert sample(metrics, deliveries, source="web", event_type="unknown", code="401") == 1
    assert sample(metrics, deliveries, source="wms", event_type="order.placed", code="403") == 1
    assert sample(metrics, deliveries, source="web", event_type="order.placed", code="409") == 1
    assert sample(metrics, deliveries, source="unknown", event_type="unknown", code="404") == 1
    assert sample(metrics, deliveries, source="web", event_type="order.cancelled", code="202") == 1
    assert f"nobody-{tag}" not in metrics
    assert sample(metrics, "retailflow_webhook_duplicates_total", source="web", event_type="order.placed") == 1
    assert sample(metrics, "retailflow_webhook_signature_failures_total", source="web") == 1
    assert sample(metrics, "retailflow_webhook_late_total", source="web", event_type="order.cancelled") == 1
    assert sample(metrics, "retailflow_webhook_unavailable_total") == 0
    # decision latency: the first deliveries of an order and the redelivery, each in the histogram
    decisions = "retailflow_order_decision_seconds_count"
    assert sample(metrics, decisions, source="web", code="200", delivery="first") == 2
    assert sample(metrics, decisions, source="web", code="200", delivery="redelivery") == 1
    assert sample(metrics, "retailflow_order_decision_seconds_sum", source="web", delivery="first") > 0


async def test_a_503_is_counted_with_its_cause() -> None:
    """Temporal unreachable (no client), and the database unreachable (the claim fails): each a 503 of its cause."""
    settings = make_settings(webhook_secrets={"web": SECRET})

    async def temporal_down() -> Client:
        raise TemporalUnavailable("connection refused")

    async def temporal_up() -> object:
        return object()  # never used: the claim fails first

    nowhere = create_engine(f"postgresql+asyncpg://rf:rf@127.0.0.1:{free_port()}/rf", pool_size=1, max_overflow=0)
    no_temporal = create_app(settings, engine=None, client_provider=temporal_down)
    no_database = create_app(settings, engine=nowhere, client_provider=temporal_up)  # type: ignore[arg-type]
    try:
        for app in (no_temporal, no_database):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rf") as http:
                answer = await post(http, "web", body("order.placed", order_id=f"DU-{uuid.uuid4().hex[:8]}"))
            assert answer.status_code == 503 and answer.headers["retry-after"], answer.text
    finally:
        await nowhere.dispose()
    for app, cause in ((no_temporal, "temporal_unreachable"), (no_database, "database")):
        metrics = door_metrics.generate(app.state.door_metrics)
        assert sample(metrics, "retailflow_webhook_unavailable_total", source="web", cause=cause) == 1, metrics
        assert sample(metrics, "retailflow_webhook_deliveries_total", source="web", event_type="order.placed",
                      code="503") == 1

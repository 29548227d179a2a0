"""Webhook ingress through HTTP (httpx ASGITransport) into processes on a dev server.

The processes here are small stand-ins registered under the real workflow type names on this module's own task
queue (the real ones are exercised by tests/test_webhooks_e2e.py): they record every event they receive, the
correlation ID their activity saw, and answer `place` like ReserveToFulfill. What this file shows is what the
HTTP layer owns: the right workflow ID and status for every event type, every error code with nothing started
or recorded, redeliveries answering as the first, the decision bound, the correlation ID reaching an activity.
"""
import asyncio
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.converter import decode_typed_search_attributes
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from client.correlation import CorrelationInterceptor
from config.logging import correlation_id
from devtools.embedded_postgres import free_port
from domain.events import EVENT_DATA, SOURCE_EVENTS, Event, WebhookBody
from domain.ids import webhook_event_id
from domain.late import ClosedProcess
from domain.order import Decision, LineDecision, OrderDecision
from domain.process import ProcessInput
from domain.routing import route
from persistence.engine import create_engine
from persistence.registry import record_closed
from starters.api import ClientProvider, create_app
from starters.signatures import shopify_sign, sign_headers
from starters.webhooks import WEBHOOK_EVENTS
from tests.support import EXAMPLES, SENDER, event, eventually, example
from tests.support import test_settings as make_settings

SECRET = "whsec_" + "c2VjcmV0LWZvci10ZXN0cy0wMTIzNDU2Nzg5YWJjZGVm"  # base64 of a test key
TOKEN = "test-token"
CLOSING = {"order.cancelled", "transfer.received", "refund.settled", "payment.settled"}


# --- stand-in processes ------------------------------------------------------------------------------------
@activity.defn(name="echo_correlation")
async def echo_correlation() -> str:
    return correlation_id.get() or ""


class _Stand:
    """What every stand-in does: record each event once (with the correlation ID its activity saw), answer
    `state`, and close on its process's closing event."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.correlations: list[str] = []
        self.placed: dict[str, OrderDecision] = {}
        self.release = False
        self.closed = False

    async def _record(self, event: Event) -> None:
        if event.event_id in self.events:
            return
        self.events.append(event.event_id)
        self.correlations.append(await workflow.execute_activity(
            echo_correlation, start_to_close_timeout=timedelta(seconds=10)))
        if str(event.type) in CLOSING:
            self.closed = True

    async def _run(self) -> None:
        await workflow.wait_condition(lambda: self.closed)
        await workflow.wait_condition(workflow.all_handlers_finished)

    @workflow.signal(name="event")
    async def event(self, event: Event) -> None:
        await self._record(event)

    @workflow.query(name="state")
    def state(self) -> dict:
        return {"workflow_id": workflow.info().workflow_id, "events": self.events,
                "correlations": self.correlations, "placements": len(self.placed),
                "stage": "closed" if self.closed else "open"}


@workflow.defn(name="ReserveToFulfill")
class FakeOrder(_Stand):
    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        super().__init__()

    @workflow.run
    async def run(self, input: ProcessInput) -> None:
        await self._run()

    @workflow.signal(name="release")
    def release_decision(self) -> None:
        self.release = True

    @workflow.update(name="place")
    async def place(self, event: Event) -> OrderDecision:
        if event.event_id in self.placed:
            return self.placed[event.event_id]
        if event.data.order_id.startswith("SLOW"):
            await workflow.wait_condition(lambda: self.release)
        await self._record(event)
        decision = OrderDecision(workflow_id=workflow.info().workflow_id, decision=Decision.RESERVED, lines=[
            LineDecision(line_id=line.line_id, reserved_quantity=line.quantity, location_id="DC-EAST")
            for line in event.data.lines])
        self.placed[event.event_id] = decision
        return decision

    @place.validator
    def check_place(self, event: Event) -> None:
        if event.data.order_id.startswith("REJ"):
            raise ApplicationError("order refused by the stand-in", type="Refused")


@workflow.defn(name="ShipToSettle")
class FakeSettle(_Stand):
    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        super().__init__()

    @workflow.run
    async def run(self, input: ProcessInput) -> None:
        await self._run()


@workflow.defn(name="Transfer")
class FakeTransfer(_Stand):
    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        super().__init__()

    @workflow.run
    async def run(self, input: ProcessInput) -> None:
        await self._run()


@workflow.defn(name="ReturnToRefund")
class FakeReturn(_Stand):
    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        super().__init__()

    @workflow.run
    async def run(self, input: ProcessInput) -> None:
        await self._run()


@workflow.defn(name="ReceiveToStock")
class FakePurchaseOrder(_Stand):
    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        super().__init__()

    @workflow.run
    async def run(self, input: ProcessInput) -> None:
        await self._run()


@workflow.defn(name="CountToAdjust")
class FakeCount(_Stand):
    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        super().__init__()

    @workflow.run
    async def run(self, input: ProcessInput) -> None:
        await self._run()


@workflow.defn(name="VendorReturn")
class FakeVendorReturn(_Stand):
    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        super().__init__()

    @workflow.run
    async def run(self, input: ProcessInput) -> None:
        await self._run()


STANDS = [FakeOrder, FakeSettle, FakeTransfer, FakeReturn, FakePurchaseOrder, FakeCount, FakeVendorReturn]


# --- helpers -----------------------------------------------------------------------------------------------
def unique_keys(type_: str) -> dict:
    """Fresh business keys for one example (the dev server is shared by the whole session)."""
    tag = uuid.uuid4().hex[:8]
    data = example(type_)["data"]
    out = {}
    for key in ("order_id", "transfer_id", "return_id", "po_id", "count_id", "rtv_id"):
        if key in data:
            out[key] = f"{data[key]}-{tag}"
    return out


def signed(body: dict | bytes, *, webhook_id: str | None = None, secrets: str | list[str] = SECRET,
           timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = sign_headers(secrets, webhook_id or f"msg_{uuid.uuid4().hex}", raw, timestamp=timestamp)
    return raw, {"content-type": "application/json", **headers}


@pytest.fixture(scope="module")
def settings(database_url: str):
    return make_settings(
        database_url=database_url,
        webhook_secrets={s: SECRET for s in set(SENDER.values())} | {"shopify": "shopify-secret"},
        api_tokens=[TOKEN],
        order_decision_timeout=timedelta(seconds=1),
    )


@pytest.fixture
async def stack(dev_env, settings):
    """The app on the dev server's client, with the stand-in processes running on this test's task queue."""
    client = dev_env.client
    engine = create_engine(settings.database_url, pool_size=5, max_overflow=30)
    worker = Worker(client, task_queue=settings.task_queue, workflows=STANDS, activities=[echo_correlation],
                    workflow_runner=UnsandboxedWorkflowRunner(), interceptors=[CorrelationInterceptor()])
    app = create_app(settings, engine=engine, client=_with_correlation(client))
    async with worker:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rf") as http:
            yield http, client, engine
    await engine.dispose()


def _with_correlation(client: Client) -> Client:
    cfg = client.config()
    cfg["interceptors"] = [CorrelationInterceptor()]
    return Client(**cfg)


async def post(http: httpx.AsyncClient, source: str, body: dict | bytes, **kw: object) -> httpx.Response:
    raw, headers = signed(body, **kw)  # type: ignore[arg-type]
    return await http.post(f"/webhooks/{source}", content=raw, headers=headers)


async def exists(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        assert err.status == RPCStatusCode.NOT_FOUND
        return False
    return True


async def delivery_rows(engine, webhook_id: str) -> int:
    async with engine.connect() as conn:
        return await conn.scalar(text("SELECT count(*) FROM webhook_deliveries WHERE webhook_id = :id"),
                                 {"id": webhook_id})


def workflow_id_of(body: dict, source: str) -> str:
    return route(event(body["type"], body["data"], source=source)).workflow_id


async def state_of(client: Client, workflow_id: str, until: Callable[[dict], object] | None = None) -> dict:
    """The stand-in's state, once `until` holds when given (signals are applied asynchronously after the 202)."""
    handle = client.get_workflow_handle(workflow_id)
    if until is None:
        return await handle.query(_Stand.state)
    return await eventually(lambda: handle.query(_Stand.state), until, what=f"the state of {workflow_id}",
                            within=15)


# --- examples --------------------------------------------------------------------------------------------
def test_every_event_type_has_a_valid_example_sent_by_its_source() -> None:
    assert {p.stem for p in EXAMPLES.glob("*.json")} == {str(t).replace(".", "_") for t in WEBHOOK_EVENTS}
    for t in WEBHOOK_EVENTS:
        body = WebhookBody.model_validate(example(str(t)))
        EVENT_DATA[body.type].model_validate(body.data)
        assert body.type in SOURCE_EVENTS[SENDER[str(t)]]


# --- every event type, end to end ---------------------------------------------------------------------------
@pytest.mark.parametrize("type_", [str(t) for t in WEBHOOK_EVENTS])
async def test_every_event_type_reaches_its_process(stack, type_: str) -> None:
    http, client, engine = stack
    source = SENDER[type_]
    body = example(type_, **unique_keys(type_))
    webhook_id = f"msg_{uuid.uuid4().hex}"
    response = await post(http, source, body, webhook_id=webhook_id)
    workflow_id = workflow_id_of(body, source)
    if type_ == "order.placed":
        assert response.status_code == 200, response.text
        decision = response.json()
        assert decision["workflow_id"] == workflow_id
        assert decision["decision"] == "reserved"
        assert [line["line_id"] for line in decision["lines"]] == ["1", "2"]
    else:
        assert response.status_code == 202, response.text
        assert response.json() == {"status": "started", "workflow_id": workflow_id}
    state = await state_of(client, workflow_id, until=lambda st: st["correlations"])
    assert state["events"] == [webhook_event_id(SENDER[type_], webhook_id)]
    # the event's identity went through Temporal headers into the process and on into its activity
    assert state["correlations"] == [webhook_event_id(SENDER[type_], webhook_id)]
    assert await delivery_rows(engine, webhook_id) == 1


async def test_a_second_event_signals_the_running_process(stack) -> None:
    http, client, _ = stack
    keys = unique_keys("transfer.requested")
    first = await post(http, "wms", example("transfer.requested", **keys))
    second = await post(http, "pos", example("transfer.shipped", **keys))
    assert first.json()["status"] == "started"
    assert second.status_code == 202
    assert second.json() == {"status": "signalled", "workflow_id": first.json()["workflow_id"]}
    state = await state_of(client, first.json()["workflow_id"], until=lambda st: len(st["correlations"]) == 2)
    assert len(state["events"]) == 2


async def test_an_event_for_a_closed_process_is_handed_to_a_late_event_process(stack) -> None:
    http, client, _ = stack
    keys = unique_keys("transfer.requested")
    opened = await post(http, "wms", example("transfer.requested", **keys))
    await post(http, "wms", example("transfer.received", **keys))  # the stand-in closes on it
    await client.get_workflow_handle(opened.json()["workflow_id"]).result()
    webhook_id = f"msg_{uuid.uuid4().hex}"
    late = await post(http, "wms", example("transfer.shipped", **keys), webhook_id=webhook_id)
    assert late.status_code == 202
    late_id = f"late:webhook:wms:{webhook_id}"
    assert late.json() == {"status": "late", "workflow_id": opened.json()["workflow_id"],
                           "case_id": f"exception:{late_id}:late_event"}
    assert await exists(client, late_id)  # the LateEvent process that stores it and opens the case


async def started_with(client: Client, workflow_id: str) -> dict[str, object]:
    """The search attributes a run was started with (its first history event), by name."""
    async for first in client.get_workflow_handle(workflow_id).fetch_history_events():
        attributes = decode_typed_search_attributes(
            first.workflow_execution_started_event_attributes.search_attributes)
        return {pair.key.name: pair.value for pair in attributes}
    raise AssertionError(f"{workflow_id} has no history")


async def test_every_start_carries_business_key_and_channel(stack) -> None:
    """Set at start (free) by update-with-start, signal-with-start and the LateEvent hand-over: the stand-in
    processes upsert nothing, so what the history shows came with the start."""
    http, client, _ = stack
    order = example("order.placed", **unique_keys("order.placed"))
    assert (await post(http, "web", order)).status_code == 200
    data = order["data"]
    assert await started_with(client, workflow_id_of(order, "web")) == {
        "BusinessKey": f"{data['channel']}/{data['order_id']}", "Channel": data["channel"]}

    delivered = example("shipment.delivered", **unique_keys("shipment.delivered"))  # opens its settlement early
    assert (await post(http, "carrier", delivered)).json()["status"] == "started"
    data = delivered["data"]
    assert await started_with(client, workflow_id_of(delivered, "carrier")) == {
        "BusinessKey": f"{data['channel']}/{data['order_id']}", "Channel": data["channel"]}

    keys = unique_keys("transfer.requested")
    opened = await post(http, "wms", example("transfer.requested", **keys))
    assert await started_with(client, opened.json()["workflow_id"]) == {"BusinessKey": keys["transfer_id"]}
    await post(http, "wms", example("transfer.received", **keys))  # the stand-in closes on it
    await client.get_workflow_handle(opened.json()["workflow_id"]).result()
    webhook_id = f"msg_{uuid.uuid4().hex}"
    assert (await post(http, "wms", example("transfer.shipped", **keys), webhook_id=webhook_id)
            ).json()["status"] == "late"
    assert await started_with(client, f"late:webhook:wms:{webhook_id}") == {"BusinessKey": keys["transfer_id"]}


async def test_a_business_key_in_the_registry_never_opens_a_second_process(stack) -> None:
    """Temporal's retention forgets a closed run; the registry does not: the event is late, not a new start."""
    http, client, engine = stack
    keys = unique_keys("transfer.requested")
    workflow_id = f"transfer:{keys['transfer_id']}"
    await record_closed(engine, ClosedProcess(
        workflow_id=workflow_id, run_id="purged-run", workflow_type="Transfer", business_key=keys["transfer_id"],
        outcome="received", stage="received", closed_at=datetime.now(UTC), state={"stage": "received"}))
    answer = await post(http, "wms", example("transfer.received", **keys))
    assert answer.status_code == 202 and answer.json()["status"] == "late"
    assert not await exists(client, workflow_id)


async def test_two_sources_may_use_the_same_webhook_id(stack) -> None:
    http, client, _ = stack
    keys = unique_keys("transfer.requested")
    webhook_id = f"msg_{uuid.uuid4().hex}"
    first = await post(http, "wms", example("transfer.requested", **keys), webhook_id=webhook_id)
    second = await post(http, "pos", example("transfer.shipped", **keys), webhook_id=webhook_id)
    assert first.json()["status"] == "started" and second.json()["status"] == "signalled"
    state = await state_of(client, first.json()["workflow_id"], until=lambda st: len(st["events"]) == 2)
    assert state["events"] == [webhook_event_id("wms", webhook_id), webhook_event_id("pos", webhook_id)]


# --- idempotency by webhook-id ------------------------------------------------------------------------------
async def test_a_redelivery_answers_as_the_first(stack) -> None:
    http, client, engine = stack
    body = example("order.placed", **unique_keys("order.placed"))
    webhook_id = f"msg_{uuid.uuid4().hex}"
    first = await post(http, "web", body, webhook_id=webhook_id)
    again = await post(http, "web", body, webhook_id=webhook_id)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert (await state_of(client, first.json()["workflow_id"]))["placements"] == 1
    assert await delivery_rows(engine, webhook_id) == 1

    other = example("return.authorized", **unique_keys("return.authorized"))
    rid = f"msg_{uuid.uuid4().hex}"
    one, two = await post(http, "web", other, webhook_id=rid), await post(http, "web", other, webhook_id=rid)
    assert one.json() == two.json() == {"status": "started", "workflow_id": one.json()["workflow_id"]}


async def test_a_webhook_id_reused_for_another_body_is_refused(stack) -> None:
    http, _, engine = stack
    webhook_id = f"msg_{uuid.uuid4().hex}"
    first = await post(http, "wms", example("transfer.requested", **unique_keys("transfer.requested")),
                       webhook_id=webhook_id)
    assert first.status_code == 202
    other = await post(http, "wms", example("transfer.requested", **unique_keys("transfer.requested")),
                       webhook_id=webhook_id)
    assert _problem(other, 409)["type"].endswith("/webhook-id-reused")
    assert await delivery_rows(engine, webhook_id) == 1


async def test_the_correlation_id_is_in_the_workflow_log(stack, caplog) -> None:
    http, client, _ = stack
    caplog.set_level(logging.INFO, logger="temporalio.workflow")
    keys = unique_keys("return.authorized")
    webhook_id = f"msg_{uuid.uuid4().hex}"
    answer = await post(http, "web", example("return.authorized", **keys), webhook_id=webhook_id)
    await state_of(client, answer.json()["workflow_id"], until=lambda st: st["correlations"])
    lines = [r for r in caplog.records
             if getattr(r, "correlation_id", None) == webhook_event_id("web", webhook_id)]
    assert lines, "no workflow log line carries the webhook-id"
    assert any(answer.json()["workflow_id"] in r.getMessage() or
               getattr(r, "temporal_workflow", {}).get("workflow_id") == answer.json()["workflow_id"]
               for r in lines)


async def test_twenty_concurrent_deliveries_make_one_process(stack) -> None:
    http, client, engine = stack
    body = example("order.placed", **unique_keys("order.placed"))
    webhook_id = f"msg_{uuid.uuid4().hex}"
    raw, headers = signed(body, webhook_id=webhook_id)
    answers = await asyncio.gather(*[http.post("/webhooks/web", content=raw, headers=headers) for _ in range(20)])
    assert {a.status_code for a in answers} == {200}
    assert all(a.json() == answers[0].json() for a in answers)
    state = await state_of(client, answers[0].json()["workflow_id"])
    assert state["placements"] == 1 and state["events"] == [webhook_event_id("web", webhook_id)]
    assert await delivery_rows(engine, webhook_id) == 1


async def test_a_slow_decision_answers_202_then_the_redelivery_answers_it(stack) -> None:
    http, client, engine = stack
    keys = unique_keys("order.placed")
    body = example("order.placed", order_id=f"SLOW-{keys['order_id']}")
    webhook_id = f"msg_{uuid.uuid4().hex}"
    first = await post(http, "web", body, webhook_id=webhook_id)
    workflow_id = workflow_id_of(body, "web")
    assert first.status_code == 202, first.text
    assert first.json() == {"status": "started", "workflow_id": workflow_id}
    await client.get_workflow_handle(workflow_id).signal(FakeOrder.release_decision)
    again = await post(http, "web", body, webhook_id=webhook_id)
    assert again.status_code == 200, again.text
    assert again.json()["decision"] == "reserved"
    assert (await state_of(client, workflow_id))["placements"] == 1
    assert await delivery_rows(engine, webhook_id) == 1


async def test_an_order_the_process_refuses_answers_409_and_records_nothing(stack) -> None:
    http, client, engine = stack
    body = example("order.placed", order_id=f"REJ-{uuid.uuid4().hex[:8]}")
    webhook_id = f"msg_{uuid.uuid4().hex}"
    response = await post(http, "web", body, webhook_id=webhook_id)
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert "refused" in response.json()["detail"]
    assert await delivery_rows(engine, webhook_id) == 0


# --- each error code, nothing started or recorded -------------------------------------------------------------
async def _nothing_happened(client: Client, engine, body: dict, source: str, webhook_id: str) -> None:
    try:
        workflow_id = workflow_id_of(body, source)
    except Exception:  # noqa: BLE001 - a body too broken to route cannot have started anything
        workflow_id = None
    if workflow_id:
        assert not await exists(client, workflow_id)
    assert await delivery_rows(engine, webhook_id) == 0


def _problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status and problem["title"] and problem["type"].startswith("https://")
    return problem


async def test_401_missing_invalid_stale_signature(stack) -> None:
    http, client, engine = stack
    body = example("transfer.requested", **unique_keys("transfer.requested"))
    raw, headers = signed(body)
    webhook_id = headers["webhook-id"]
    cases = [
        {k: v for k, v in headers.items() if k != "webhook-signature"},  # missing
        {**headers, "webhook-signature": headers["webhook-signature"][:-6] + "AAAAA="},  # invalid
        signed(body, webhook_id=webhook_id, secrets="whsec_" + "b3RoZXItc2VjcmV0")[1],  # someone else's secret
        signed(body, webhook_id=webhook_id, timestamp=int(time.time()) - 301)[1],  # stale
    ]
    for h in cases:
        _problem(await http.post("/webhooks/wms", content=raw, headers=h), 401)
    # the body was changed after signing
    tampered = raw.replace(b"DC-EAST", b"DC-WEST")
    _problem(await http.post("/webhooks/wms", content=tampered, headers=headers), 401)
    await _nothing_happened(client, engine, body, "wms", webhook_id)


async def test_403_event_type_not_allowed_for_the_source(stack) -> None:
    http, client, engine = stack
    body = example("order.placed", **unique_keys("order.placed"))
    raw, headers = signed(body)
    problem = _problem(await http.post("/webhooks/carrier", content=raw, headers=headers), 403)
    assert "carrier" in problem["detail"] and "order.placed" in problem["detail"]
    internal = {"type": "order.closed", "timestamp": "2026-11-23T10:00:00Z",
                "data": {"order_id": "X1", "channel": "web", "outcome": "shipped"}}
    _problem(await post(http, "web", internal), 403)
    await _nothing_happened(client, engine, body, "carrier", headers["webhook-id"])


async def test_400_body_not_json(stack) -> None:
    http, _, engine = stack
    raw, headers = signed(b'{"type": "order.placed", "data": ')
    _problem(await http.post("/webhooks/web", content=raw, headers=headers), 400)
    raw, headers = signed(b"\xff\xfe not utf-8")
    _problem(await http.post("/webhooks/web", content=raw, headers=headers), 400)
    assert await delivery_rows(engine, headers["webhook-id"]) == 0


async def test_413_body_over_the_limit_declared_or_streamed(stack, settings) -> None:
    http, _, engine = stack
    big = example("transfer.requested", **unique_keys("transfer.requested"))
    big["padding"] = "x" * (settings.webhook_max_body_bytes + 1)
    raw, headers = signed(big)
    _problem(await http.post("/webhooks/wms", content=raw, headers=headers), 413)

    async def chunks():  # no Content-Length: the streamed count stops it
        for i in range(0, len(raw), 16 * 1024):
            yield raw[i:i + 16 * 1024]

    streamed = await http.post("/webhooks/wms", content=chunks(), headers=headers)
    assert "content-length" not in {k.lower() for k in streamed.request.headers}
    _problem(streamed, 413)
    assert await delivery_rows(engine, headers["webhook-id"]) == 0


async def test_422_field_by_field(stack) -> None:
    http, client, engine = stack
    keys = unique_keys("order.placed")
    body = example("order.placed", **keys)
    body["data"]["lines"][0]["quantity"] = 0
    del body["data"]["currency"]
    raw, headers = signed(body)
    problem = _problem(await http.post("/webhooks/web", content=raw, headers=headers), 422)
    fields = {e["field"] for e in problem["errors"]}
    assert fields == {"data.lines.0.quantity", "data.currency"}
    await _nothing_happened(client, engine, example("order.placed", **keys), "web", headers["webhook-id"])

    envelope = _problem(await post(http, "web", {"type": "order.exploded", "data": {}}), 422)
    assert {e["field"] for e in envelope["errors"]} == {"type", "timestamp"}
    _problem(await post(http, "web", [1, 2, 3]), 422)  # type: ignore[arg-type]


@pytest.mark.parametrize("fault", ["duplicate_line_id", "total_over_authorized"])
async def test_422_placement_checks_the_body_shows(fault: str, stack) -> None:
    """Duplicate line_ids and an order total above the authorized amount are refused at the door, field by
    field, and nothing starts (issue 17, rule 6)."""
    http, client, engine = stack
    keys = unique_keys("order.placed")
    body = example("order.placed", **keys)
    if fault == "duplicate_line_id":
        body["data"]["lines"][1]["line_id"] = body["data"]["lines"][0]["line_id"]
        field, words = "data.lines", "appears more than once"
    else:
        body["data"]["payment"]["authorized_amount"] = "51.99"  # the lines cost 52.00
        field, words = "data.payment", "exceeds the authorized amount 51.99"
    raw, headers = signed(body)
    problem = _problem(await http.post("/webhooks/web", content=raw, headers=headers), 422)
    assert [e["field"] for e in problem["errors"]] == [field] and words in problem["errors"][0]["message"]
    await _nothing_happened(client, engine, body, "web", headers["webhook-id"])


async def test_404_unknown_source(stack) -> None:
    http, _, _ = stack
    _problem(await post(http, "nobody", example("order.placed")), 404)


async def test_503_when_temporal_cannot_be_reached(dev_env, settings) -> None:
    engine = create_engine(settings.database_url, pool_size=2, max_overflow=0)
    down = settings.model_copy(update={"temporal_address": "127.0.0.1:1"})
    app = create_app(down, engine=engine, client_provider=ClientProvider(down, connect_timeout=2))
    body = example("order.placed", **unique_keys("order.placed"))
    raw, headers = signed(body)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rf") as http:
            response = await http.post("/webhooks/web", content=raw, headers=headers)
            problem = _problem(response, 503)
            assert response.headers["retry-after"].isdigit()
            assert "Temporal" in problem["detail"]
            ready = await http.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"] == {"temporal": False, "database": True}
        await _nothing_happened(dev_env.client, engine, body, "web", headers["webhook-id"])
    finally:
        await engine.dispose()


# --- the native Shopify format --------------------------------------------------------------------------------
def shopify_order(order_id: int) -> dict:
    return {"id": order_id, "name": f"#{order_id}", "currency": "usd", "total_price": "52.00",
            "created_at": "2026-11-23T10:00:00-05:00",
            "line_items": [{"id": 11, "sku": "APP-TEE-WHT-M", "quantity": 2, "price": "19.00"},
                           {"id": 12, "sku": "HOM-MUG-SAND", "quantity": 1, "price": "14.00"}],
            "note_attributes": []}


async def test_shopify_orders_create_is_an_order_placed(stack) -> None:
    http, client, engine = stack
    order_id = uuid.uuid4().int % 10**15
    raw = json.dumps(shopify_order(order_id)).encode()
    headers = {"content-type": "application/json", "x-shopify-topic": "orders/create",
               "x-shopify-hmac-sha256": shopify_sign("shopify-secret", raw),
               "x-shopify-webhook-id": str(uuid.uuid4())}
    response = await http.post("/webhooks/shopify", content=raw, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["workflow_id"] == f"order:shopify:{order_id}"
    assert [line["line_id"] for line in response.json()["lines"]] == ["11", "12"]
    again = await http.post("/webhooks/shopify", content=raw, headers=headers)
    assert again.json() == response.json()

    forged = {**headers, "x-shopify-hmac-sha256": shopify_sign("wrong", raw), "x-shopify-webhook-id": "w2"}
    raw2 = json.dumps(shopify_order(order_id + 1)).encode()
    _problem(await http.post("/webhooks/shopify", content=raw2, headers=forged), 401)
    assert not await exists(client, f"order:shopify:{order_id + 1}")
    assert await delivery_rows(engine, "w2") == 0


# --- health ---------------------------------------------------------------------------------------------------
async def test_health_and_readiness(stack) -> None:
    http, _, _ = stack
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    ready = await http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"temporal": True, "database": True}


# --- serving ----------------------------------------------------------------------------------------------------
def test_serve_runs_the_door_on_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve` runs uvicorn on the loop uvicorn would choose itself (uvloop, installed with uvicorn[standard]),
    not on the default asyncio loop that `asyncio.run(server.serve())` gives."""
    import starters.api as api
    from config.settings import Settings

    loops: list[str] = []

    async def serving(self, sockets=None) -> None:  # noqa: ANN001
        loops.append(type(asyncio.get_running_loop()).__module__.split(".")[0])
        self.started = True

    monkeypatch.setattr(api._Server, "serve", serving)
    assert api.serve(Settings(database_url="postgresql://127.0.0.1:1/none", http_port=free_port())) == 0
    assert loops == ["uvloop"]


async def test_serve_answers_then_exits_cleanly_on_sigterm(database_url) -> None:
    """`retailflow api` (starters.api.serve) in its own process: up without Temporal (readyz says so), and a
    SIGTERM ends it with exit code 0."""
    port = free_port()
    env = {**os.environ, "RETAILFLOW_DATABASE_URL": database_url, "RETAILFLOW_HTTP_PORT": str(port),
           "RETAILFLOW_TEMPORAL_ADDRESS": "127.0.0.1:1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; from starters.api import serve; from config.settings import Settings; "
                              "sys.exit(serve(Settings()))",
        env=env, cwd=str(EXAMPLES.parent), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            async def health() -> httpx.Response:
                assert proc.returncode is None, "the service exited"
                return await http.get("/healthz")

            up = await eventually(health, what="the service answers", within=60, every=0.2,
                                  ignoring=(httpx.TransportError,))
            assert up.json() == {"status": "ok"}
            ready = await http.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"] == {"temporal": False, "database": True}
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

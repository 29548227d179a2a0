"""Tracing (config/tracing.py): one signed order.placed through the real HTTP service and a real worker on the
dev server is one trace, HTTP span -> the delivery's idempotency claim -> the update-with-start -> the workflow's
update handler and each activity -> their SQL; the TracingInterceptor adds no workflow command (the committed
histories replay with it on, and the traced order's history replays on a worker without it); and tracing is off,
with nothing installed, unless an OTLP endpoint is configured."""
import asyncio
import json
import uuid
from datetime import timedelta

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from client.correlation import CorrelationInterceptor
from config import tracing
from devtools.histories import history_files, replayer, workflow_id_of
from persistence.engine import create_engine
from starters.api import create_app
from starters.signatures import sign_headers
from tests.support import example, seeded
from tests.support import test_settings as make_settings
from worker.factory import build_worker, workflow_runner
from worker.registry import WORKFLOWS

SECRET = "whsec_" + "ZTJlLXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVm"
# the four activities ReserveToFulfill's `place` update runs before it answers
PLACE_ACTIVITIES = ("lookup_items", "get_availability", "post_movement", "create_pick_task")


def ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[str]:
    """The names of `span`'s ancestors, nearest first."""
    out = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        out.append(span.name)
    return out


def one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"{name}: {len(found)} spans ({sorted({s.name for s in spans})})"
    return found[0]


def is_sql(span: ReadableSpan) -> bool:
    return any(key.startswith("db.") for key in (span.attributes or {}))


@pytest.mark.asyncio(loop_scope="session")
async def test_one_order_is_one_trace_from_the_http_request_to_the_sql(dev_env, database_url) -> None:
    await seeded(database_url)
    exporter = InMemorySpanExporter()
    traced = tracing.Tracing("retailflow-test", exporter, batch=False)  # synchronous export: all spans are in
    settings = make_settings(database_url=database_url, webhook_secrets={"web": SECRET},
                             order_decision_timeout=timedelta(seconds=20))
    engine = create_engine(database_url)
    traced.instrument_engine(engine)
    config = dev_env.client.config()
    config["interceptors"] = [CorrelationInterceptor(), traced.interceptor]
    client = Client(**config)  # the worker built on it inherits the TracingInterceptor, as in `retailflow worker`
    order_id = f"TR-{uuid.uuid4().hex[:8]}"
    raw = json.dumps(example("order.placed", order_id=order_id)).encode()
    webhook_id = f"msg_{uuid.uuid4().hex}"
    try:
        with tracing.using(traced):
            app = create_app(settings, engine=engine, client=client, tracing=traced)
            async with build_worker(client, engine, settings):
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rf",
                                             timeout=60) as http:
                    answer = await http.post("/webhooks/web", content=raw, headers={
                        "content-type": "application/json", **sign_headers(SECRET, webhook_id, raw)})
                # the decision is answered before the WMS pick task: keep the worker until that activity is done
                for _ in range(300):
                    if any(s.name == "RunActivity:create_pick_task" for s in exporter.get_finished_spans()):
                        break
                    await asyncio.sleep(0.1)
            spans = list(exporter.get_finished_spans())
        assert answer.status_code == 200, answer.text
        assert answer.json()["decision"] == "reserved"
        workflow_id = f"order:web:{order_id}"

        # one trace: the HTTP request's
        http_span = one(spans, "POST /webhooks/{source}")
        trace = [s for s in spans if s.context.trace_id == http_span.context.trace_id]
        by_id = {s.context.span_id: s for s in trace}
        assert http_span.parent is None
        assert http_span.attributes[tracing.SOURCE] == "web"
        assert http_span.attributes[tracing.EVENT_TYPE] == "order.placed"
        assert http_span.attributes[tracing.WEBHOOK_ID] == webhook_id
        assert http_span.attributes[tracing.BUSINESS_KEY] == f"web/{order_id}"
        assert http_span.attributes[tracing.WORKFLOW_ID] == workflow_id

        # HTTP -> the delivery -> its idempotency claim (an INSERT) and the recorded answer (an UPDATE)
        deliver = one(trace, "webhook.deliver")
        assert ancestors(deliver, by_id) == [http_span.name]
        for step, verb in (("webhook.claim", "INSERT"), ("webhook.answer", "UPDATE")):
            span = one(trace, step)
            assert ancestors(span, by_id)[0] == "webhook.deliver"
            sql = [s for s in trace if s.parent and s.parent.span_id == span.context.span_id and is_sql(s)]
            assert any(verb in s.attributes.get("db.statement", s.attributes.get("db.query.text", ""))
                       for s in sql), f"{step}: {[s.name for s in sql]}"

        # -> the update-with-start -> the workflow's update handler, and each activity -> its SQL
        update_with_start = one(trace, "StartUpdateWithStartWorkflow:ReserveToFulfill")
        assert ancestors(update_with_start, by_id)[:2] == ["webhook.deliver", http_span.name]
        assert update_with_start.attributes["temporalWorkflowID"] == workflow_id
        for name in ("RunWorkflow:ReserveToFulfill", "ValidateUpdate:place", "HandleUpdate:place"):
            assert update_with_start.name in ancestors(one(trace, name), by_id), name
        handler = one(trace, "HandleUpdate:place")
        for activity in PLACE_ACTIVITIES:
            runs = [s for s in trace if s.name == f"RunActivity:{activity}"]
            assert runs, f"no span of activity {activity} in the trace"
            for run in runs:
                chain = ancestors(run, by_id)
                assert chain[0] == f"StartActivity:{activity}" and update_with_start.name in chain, chain
                assert run.attributes["temporalWorkflowID"] == workflow_id
                assert run.start_time >= handler.start_time  # the handler's work, in the order it ran
                sql = [s for s in trace if s.parent and s.parent.span_id == run.context.span_id and is_sql(s)]
                assert sql, f"RunActivity:{activity} has no SQL span"
        # every SQL statement of the delivery is in this trace, none is an orphan of its own
        assert all(s.context.trace_id == http_span.context.trace_id for s in spans if is_sql(s))

        # a traced run replays on a worker without tracing: the interceptor added no command
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, result.replay_failure
    finally:
        await engine.dispose()


@pytest.mark.asyncio(loop_scope="session")
async def test_the_committed_histories_replay_with_the_tracing_interceptor_on() -> None:
    """The interceptor on the replayer (as on a traced worker) issues no command of its own: one committed history
    of each workflow type (tests/test_replay.py replays them all without it)."""
    traced = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter, workflow_runner=workflow_runner(),
                      interceptors=[TracingInterceptor()])
    types = {w.__temporal_workflow_definition.name for w in WORKFLOWS}  # type: ignore[attr-defined]
    files = {path.parent.name: path for path in history_files() if path.parent.name in types}.values()
    assert len(files) == len(types)
    for path in files:
        history = WorkflowHistory.from_json(workflow_id_of(path), path.read_text())
        result = await traced.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, f"{path.name}: {result.replay_failure!r}"


def test_tracing_is_off_unless_an_otlp_endpoint_is_configured(monkeypatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED",
                 "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(name, raising=False)
    assert tracing.configure(make_settings(), "retailflow-test") is None
    assert tracing.current() is None
    assert tracing.span("webhook.deliver", source="web") is tracing.span("other")  # one shared no-op
    assert not getattr(create_app(make_settings()), "_is_instrumented_by_opentelemetry", False)
    assert getattr(create_app(make_settings(), tracing=tracing.Tracing("t", InMemorySpanExporter())),
                   "_is_instrumented_by_opentelemetry", False)

    assert tracing.wanted(make_settings(otlp_endpoint="http://jaeger:4318"))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert tracing.wanted(make_settings())
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not tracing.wanted(make_settings(otlp_endpoint="http://jaeger:4318"))


def test_the_otlp_endpoint_is_a_base_url_like_the_standard_variable() -> None:
    exporter = tracing.otlp_exporter(make_settings(otlp_endpoint="http://jaeger:4318/"))
    assert exporter._endpoint == "http://jaeger:4318/v1/traces"
    traced = tracing.Tracing("retailflow-test", exporter)
    with tracing.using(traced):
        assert tracing.current() is traced
    assert tracing.current() is None

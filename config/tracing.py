"""OpenTelemetry tracing, one trace per webhook delivery from the HTTP request to each activity's SQL; off (and
nothing of the SDK imported) unless an OTLP endpoint is set. The pieces: docs/runtime.md."""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine

from config.settings import Settings

# OpenTelemetry (SDK, OTLP exporter, instrumentations, Temporal's interceptor) is imported in the functions that
# run only with tracing on: importing it took 0.45-2.4 s (measured 2026-12-01, shared 2-core machine), a cost a
# process without tracing must not pay. Its types, and FastAPI's (the HTTP service's only), are for annotations.
if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace.export import SpanExporter
    from temporalio.contrib.opentelemetry import TracingInterceptor

log = logging.getLogger("retailflow.tracing")

# span attributes of a delivery (on the HTTP span and on webhook.deliver)
SOURCE = "retailflow.source"
EVENT_TYPE = "retailflow.event_type"
WEBHOOK_ID = "retailflow.webhook_id"
BUSINESS_KEY = "retailflow.business_key"
WORKFLOW_ID = "retailflow.workflow_id"

# what the HTTP span leaves out: probes and the scrape would drown the deliveries
EXCLUDED_URLS = "healthz,readyz,metrics"

_NOOP = contextlib.nullcontext()
_current: Tracing | None = None


def wanted(settings: Settings) -> bool:
    """Whether this process should export traces (an OTLP endpoint is configured, and OTel not disabled)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(settings.otlp_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def otlp_exporter(settings: Settings) -> SpanExporter:
    """OTLP over HTTP/protobuf. `RETAILFLOW_OTLP_ENDPOINT` is a base URL like `OTEL_EXPORTER_OTLP_ENDPOINT`
    (`http://jaeger:4318`); without it the exporter reads the standard `OTEL_EXPORTER_OTLP_*` variables."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    if not settings.otlp_endpoint:
        return OTLPSpanExporter()
    endpoint = settings.otlp_endpoint.rstrip("/")
    if not endpoint.endswith("/v1/traces"):
        endpoint += "/v1/traces"
    return OTLPSpanExporter(endpoint=endpoint)


class Tracing:
    """A tracer provider with its exporter, and what instruments the app, the engine and the Temporal client."""

    def __init__(self, service_name: str, exporter: SpanExporter, *, batch: bool = True) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from temporalio.contrib.opentelemetry import TracingInterceptor

        name = os.environ.get("OTEL_SERVICE_NAME") or service_name
        self.provider = TracerProvider(resource=Resource.create({"service.name": name}))
        # batch in production (export off the request path); simple (synchronous) for tests
        self.provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("retailflow")
        self.interceptor: TracingInterceptor = TracingInterceptor(self.provider.get_tracer("temporalio"))
        self._engine_tracers: list[Any] = []

    def instrument_app(self, app: FastAPI) -> None:
        """The HTTP server span of every request (before the app serves its first request)."""
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, tracer_provider=self.provider, excluded_urls=EXCLUDED_URLS,
                                           exclude_spans=["receive", "send"])

    def instrument_engine(self, engine: AsyncEngine) -> None:
        """A span for every SQL statement on `engine` (the async engine's sync core carries the events)."""
        from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
        from opentelemetry.metrics import NoOpMeter
        from opentelemetry.trace import get_tracer

        tracer = get_tracer("opentelemetry.instrumentation.sqlalchemy", tracer_provider=self.provider)
        connections = NoOpMeter("retailflow").create_up_down_counter("db.client.connections.usage")
        self._engine_tracers.append(EngineTracer(tracer, engine.sync_engine, connections))

    def install(self) -> Tracing:
        """Make this the process's tracing (what `span(...)` uses)."""
        global _current
        _current = self
        return self

    def shutdown(self) -> None:
        """Export what is still buffered and stop; the process has no tracing afterwards."""
        global _current
        if _current is self:
            _current = None
        for engine_tracer in self._engine_tracers:
            with contextlib.suppress(Exception):
                engine_tracer.remove_all_event_listeners()
        self._engine_tracers.clear()
        self.provider.shutdown()


def configure(settings: Settings, service_name: str) -> Tracing | None:
    """The process's tracing when an OTLP endpoint is configured (installed as current), else None."""
    if not wanted(settings):
        return None
    tracing = Tracing(service_name, otlp_exporter(settings)).install()
    log.info("tracing on: spans exported over OTLP", extra={"service": service_name})
    return tracing


def current() -> Tracing | None:
    return _current


def span(name: str, **attributes: Any) -> contextlib.AbstractContextManager[Any]:
    """A child span of the current one while tracing is on; a shared no-op otherwise. None values are left out."""
    if _current is None:
        return _NOOP
    return _current.tracer.start_as_current_span(
        name, attributes={k: v for k, v in attributes.items() if v is not None})


def annotate(**attributes: Any) -> None:
    """Put attributes on the current span (the HTTP request's, in a route) while tracing is on."""
    if _current is None:
        return
    from opentelemetry import trace

    trace.get_current_span().set_attributes({k: v for k, v in attributes.items() if v is not None})


@contextlib.contextmanager
def using(tracing: Tracing | None) -> Iterator[Tracing | None]:
    """`tracing` as the current one for the block (tests and in-process stacks), shut down after it."""
    if tracing is None:
        yield None
        return
    tracing.install()
    try:
        yield tracing
    finally:
        tracing.shutdown()

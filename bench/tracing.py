"""What tracing costs a delivery: signed order.placed webhooks with tracing off and on (`python -m bench.tracing`).

One process holds the HTTP service (the FastAPI app over httpx's ASGI transport) and a worker on a local dev
server and an embedded PostgreSQL, as tests/test_tracing.py does. Rounds alternate off / on so the machine's load
drifts over both alike. Each round sends `--orders` orders one after the other and measures the answer's latency
(request to decision) and the process's CPU time per delivery (HTTP + worker + exporter, all in this process).
"On" is the production setup (config/tracing.py: batch span processor) with an exporter that encodes every span
as OTLP protobuf and drops it: the CPU of tracing and of OTLP encoding, without a network or a collector;
"sampled_10%" the same with `OTEL_TRACES_SAMPLER=parentbased_traceidratio`, `OTEL_TRACES_SAMPLER_ARG=0.1`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import httpx
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from bench.common import load, percentile
from client.correlation import CorrelationInterceptor
from config import tracing
from devtools.catalog import DISTRIBUTION_CENTERS, ITEMS
from devtools.stack import temporal_cli
from starters.api import create_app
from starters.signatures import sign_headers

SECRET = "whsec_" + "YmVuY2gtdHJhY2luZy1zZWNyZXQ="


class EncodingExporter(SpanExporter):
    """Encodes every span as an OTLP export request, as the OTLP exporter does before it sends, and drops it."""

    def __init__(self) -> None:
        self.spans = 0
        self.bytes = 0
        self.seconds = 0.0  # CPU time spent encoding (in the batch processor's thread)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        begun = time.thread_time()
        self.spans += len(spans)
        self.bytes += len(encode_spans(spans).SerializeToString())
        self.seconds += time.thread_time() - begun
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def order(n: int, run: str) -> bytes:
    item = ITEMS[n % len(ITEMS)]
    order_id = f"BT-{run}-{n}"
    return json.dumps({"type": "order.placed", "timestamp": "2026-12-01T09:00:00Z", "data": {
        "order_id": order_id, "channel": "web", "currency": "USD",
        "lines": [{"line_id": "1", "sku": item.sku, "quantity": 1, "uom": "EA", "unit_price": str(item.price)}],
        "fulfillment": {"mode": "ship", "location_id": DISTRIBUTION_CENTERS[n % len(DISTRIBUTION_CENTERS)]},
        "payment": {"payment_id": f"pay-{order_id}", "authorized_amount": str(item.price)}}}).encode()


MODES = {"off": None, "on": "parentbased_always_on", "sampled_10%": "parentbased_traceidratio"}


async def a_round(env: WorkflowEnvironment, database_url: str, mode: str, orders: int, run: str) -> dict:
    from config.settings import Settings
    from persistence.engine import create_engine
    from worker.factory import build_worker

    settings = Settings(database_url=database_url, webhook_secrets={"web": SECRET}, task_queue=f"bench-{run}",
                        order_decision_timeout=timedelta(seconds=30), http_metrics_port=0)
    exporter = EncodingExporter()
    traced = MODES[mode] is not None
    if traced:  # sampling is the standard OTEL_TRACES_SAMPLER knob, read when the provider is made
        os.environ["OTEL_TRACES_SAMPLER"], os.environ["OTEL_TRACES_SAMPLER_ARG"] = MODES[mode], "0.1"
    tracer = tracing.Tracing("retailflow-bench", exporter) if traced else None
    engine = create_engine(database_url, pool_size=10, max_overflow=10)
    if tracer is not None:
        tracer.instrument_engine(engine)
    config = env.client.config()
    config["interceptors"] = [CorrelationInterceptor(), *([tracer.interceptor] if tracer else [])]
    client = Client(**config)
    app = create_app(settings, engine=engine, client=client, tracing=tracer)
    latencies: list[float] = []
    try:
        with tracing.using(tracer):
            async with build_worker(client, engine, settings):
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rf",
                                             timeout=60) as http:
                    for n in range(-3, orders):  # three warm-up deliveries, not measured
                        raw = order(n + 3, run)
                        headers = {"content-type": "application/json",
                                   **sign_headers(SECRET, f"msg_{uuid.uuid4().hex}", raw)}
                        if n == 0:
                            cpu0 = time.process_time()
                            wall0 = time.perf_counter()
                        begun = time.perf_counter()
                        answer = await http.post("/webhooks/web", content=raw, headers=headers)
                        if answer.status_code != 200:
                            raise RuntimeError(f"{answer.status_code}: {answer.text}")
                        if n >= 0:
                            latencies.append(time.perf_counter() - begun)
                    cpu = time.process_time() - cpu0
                    wall = time.perf_counter() - wall0
    finally:
        await engine.dispose()
    return {"mode": mode, "orders": orders, "latency_ms_median": statistics.median(latencies) * 1000,
            "latency_ms_p95": percentile(latencies, 95) * 1000, "cpu_ms_per_delivery": cpu / orders * 1000,
            "wall_s": wall, "spans_per_delivery": exporter.spans / (orders + 3) if traced else 0,
            "otlp_bytes_per_delivery": exporter.bytes / (orders + 3) if traced else 0,
            "encode_cpu_ms_per_delivery": exporter.seconds / (orders + 3) * 1000, "load": load()}


async def run(rounds: int, orders: int) -> dict:
    from devtools.embedded_postgres import EmbeddedPostgres
    from devtools.seed import seed

    pg = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="retailflow-bench-pg-")))
    database_url = pg.start()
    from client.names import SEARCH_ATTRIBUTES

    extra = ["--dynamic-config-value", "frontend.enableUpdateWorkflowExecution=true"]
    for name, kind in SEARCH_ATTRIBUTES.items():  # as `retailflow dev` registers them
        extra += ["--search-attribute", f"{name}={kind}"]
    env = await WorkflowEnvironment.start_local(data_converter=pydantic_data_converter,
                                                dev_server_existing_path=temporal_cli(), ui=False,
                                                dev_server_extra_args=extra)
    results = []
    try:
        await seed(database_url)
        for r in range(rounds):
            for mode in MODES:
                result = await a_round(env, database_url, mode, orders, f"{r}{mode[:2]}{uuid.uuid4().hex[:4]}")
                results.append(result)
                print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}),
                      flush=True)
    finally:
        await env.shutdown()
        pg.destroy()
    summary = {}
    for mode in MODES:
        mine = [r for r in results if r["mode"] == mode]
        summary[mode] = {k: statistics.median(r[k] for r in mine)
                         for k in ("latency_ms_median", "latency_ms_p95", "cpu_ms_per_delivery", "spans_per_delivery",
                                   "otlp_bytes_per_delivery", "encode_cpu_ms_per_delivery")}
    return {"rounds": results, "summary": summary}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.tracing", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="rounds of off, on, sampled (default 3)")
    p.add_argument("--orders", type=int, default=30, help="measured deliveries per round (default 30)")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    a = p.parse_args(argv)
    out = asyncio.run(run(a.rounds, a.orders))
    print(json.dumps(out["summary"], indent=1))
    if a.out:
        a.out.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

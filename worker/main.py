"""`retailflow worker`: one worker process against a configured Temporal and PostgreSQL.

Connects (retrying while Temporal is still starting, as in docker-compose), migrates the database to head (an
advisory lock serialises several replicas starting at once), runs every workflow and activity on the task queue
until SIGTERM or SIGINT, then shuts down gracefully: polling stops, running activities get
`graceful_shutdown_timeout` to finish, the database pool is closed and the process exits 0. With
`RETAILFLOW_METRICS_PORT` the SDK runtime serves Prometheus metrics on `/metrics` of that port, on
`RETAILFLOW_METRICS_HOST` (loopback unless configured: the metrics name every process type and queue); with an OTLP
endpoint (`RETAILFLOW_OTLP_ENDPOINT`, config/tracing.py) every workflow handler, activity and SQL statement is
traced, continuing the trace of the delivery that caused it.
"""
from __future__ import annotations

import asyncio
import logging
import signal
from datetime import timedelta

import stamina
import structlog
from temporalio.client import Client, Interceptor
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from config.logging import temporal_runtime_logging
from config.settings import Settings

log = structlog.get_logger("retailflow.worker")

GRACEFUL_SHUTDOWN = timedelta(seconds=20)


def build_runtime(settings: Settings) -> Runtime:
    """The SDK runtime: core logs forwarded into our log stream, Prometheus metrics when a port is set."""
    metrics = None
    if settings.metrics_port:
        metrics = PrometheusConfig(bind_address=f"{settings.metrics_host}:{settings.metrics_port}")
    return Runtime(telemetry=TelemetryConfig(logging=temporal_runtime_logging(), metrics=metrics))


async def connect_with_retry(settings: Settings, runtime: Runtime | None = None, *,
                             give_up_after: float = 120.0, stop: asyncio.Event | None = None,
                             interceptors: list[Interceptor] | None = None) -> Client:
    """Temporal may still be starting (compose, a dev stack restart): retry any failure to connect with
    jittered exponential backoff (stamina; each retry is logged) for up to `give_up_after` s, or until `stop`."""
    from client.connect import connect

    def still_wanted(_: Exception) -> bool:
        return stop is None or not stop.is_set()

    async for attempt in stamina.retry_context(on=still_wanted, attempts=None, timeout=give_up_after,
                                               wait_initial=0.5, wait_max=5.0, wait_jitter=0.5):
        with attempt:
            return await connect(settings, runtime=runtime, interceptors=interceptors)
    raise AssertionError("unreachable: stamina re-raises the last error")


def _install_stop_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (in-process tests): the caller stops us
            pass


async def _ensure_reconciliation_schedule(client: Client, settings: Settings) -> None:
    """Create or update the `reconciliation` schedule (client/schedules.py); idempotent, so every replica may.
    A failure (e.g. no permission on schedules) is logged and the worker runs on: processes come first."""
    from client.schedules import ensure_schedule

    try:
        await ensure_schedule(client, settings)
    except Exception as err:  # noqa: BLE001
        log.error("reconciliation schedule not ensured", error=str(err))
    else:
        log.info("reconciliation schedule ensured", every=str(settings.reconciliation_every))


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT (or `stop` is set); returns the process exit code."""
    from persistence.engine import create_engine
    from persistence.migrations import upgrade
    from worker.factory import build_worker

    if not settings.database_url:
        log.error("RETAILFLOW_DATABASE_URL is not set; `retailflow worker` needs a PostgreSQL "
                  "(`retailflow dev` starts an embedded one)")
        return 2
    stop = stop or asyncio.Event()
    _install_stop_handlers(stop)

    runtime = build_runtime(settings)
    from config.tracing import configure

    tracing = configure(settings, "retailflow-worker")  # None unless an OTLP endpoint is configured
    client = await connect_with_retry(settings, runtime, stop=stop,
                                      interceptors=[tracing.interceptor] if tracing is not None else None)
    await upgrade(settings.database_url)
    await _ensure_reconciliation_schedule(client, settings)
    # one connection per activity slot: an activity never queues for the pool, and the pool wait (5 s) is far
    # shorter than any activity's start-to-close (30 s), so a starved pool fails an attempt that is retried
    engine = create_engine(settings.database_url, pool_size=settings.max_concurrent_activities, max_overflow=0,
                           statement_timeout=settings.database_statement_timeout.total_seconds(),
                           pool_timeout=settings.database_pool_timeout.total_seconds(),
                           connect_timeout=settings.database_connect_timeout.total_seconds())
    if tracing is not None:
        tracing.instrument_engine(engine)
    try:
        from worker.metrics import BusinessMetrics

        # business counters (processes started/completed, cases opened) beside the SDK's on /metrics
        worker = build_worker(client, engine, settings, graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
                              interceptors=[BusinessMetrics()])
        async with worker:
            log.info("worker started", task_queue=settings.task_queue, namespace=settings.temporal_namespace,
                     address=settings.temporal_address, identity=worker.config().get("identity") or client.identity,
                     metrics_port=settings.metrics_port)
            await stop.wait()
            log.info("worker stopping: no new tasks, waiting for running activities",
                     grace_s=GRACEFUL_SHUTDOWN.total_seconds())
        log.info("worker stopped")
    finally:
        await engine.dispose()
        if tracing is not None:
            tracing.shutdown()  # exports what is still buffered
    logging.shutdown()
    return 0

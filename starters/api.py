"""The retailflow HTTP service: webhooks, the read API, `/healthz`, `/readyz`, `/openapi.json`; `serve(settings)`
runs it (`retailflow api`, the dev stack). Why FastAPI, and how the webhook route reads its own body: docs/door.md."""
import asyncio
import contextlib
import json
import logging
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, create_model
from pydantic.json_schema import models_json_schema
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, Interceptor

from adapters.erp import ErpPort
from adapters.stub_erp import PostgresErp
from client.connect import connect
from config import tracing as tracing_
from config.settings import Settings
from domain.events import EVENT_DATA, SOURCE_EVENTS, EventType
from domain.order import OrderDecision
from persistence.engine import create_engine
from persistence.migrations import upgrade
from starters import door_metrics, problems, read_api, shopify
from starters.guard import KEEP_ALIVE_S, BodyGuard, UnsafeConfiguration, check_startup, protocol_for
from starters.housekeeping import run_periodically
from starters.webhooks import WEBHOOK_EVENTS, Ingress, TemporalUnavailable, WebhookAccepted

log = logging.getLogger("retailflow.http")

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
ClientGetter = Callable[[], Awaitable[Client]]


class ClientProvider:
    """A Temporal client connected on first use (the service starts even when Temporal is down, answering 503
    until it is up), then shared."""

    def __init__(self, settings: Settings, client: Client | None = None, connect_timeout: float = 5.0,
                 interceptors: list[Interceptor] | None = None) -> None:
        self.settings = settings
        self.client = client
        self.connect_timeout = connect_timeout
        self.interceptors = interceptors or []
        self._lock = asyncio.Lock()

    async def __call__(self) -> Client:
        if self.client is not None:
            return self.client
        async with self._lock:
            if self.client is None:
                try:
                    self.client = await asyncio.wait_for(connect(self.settings, interceptors=self.interceptors),
                                                         self.connect_timeout)
                except Exception as down:  # noqa: BLE001 - any failure to connect is "unreachable"
                    raise TemporalUnavailable(str(down) or type(down).__name__) from down
        return self.client


# --- OpenAPI: one envelope schema per event type, with an example each ------------------------------------
def envelope_models() -> dict[EventType, type[BaseModel]]:
    out = {}
    for t in WEBHOOK_EVENTS:
        data = EVENT_DATA[t]
        out[t] = create_model(
            f"{data.__name__}Webhook",
            __doc__=f"The `{t}` webhook body.",
            type=(Literal[t.value], ...),  # type: ignore[valid-type]
            timestamp=(datetime, ...),
            data=(data, ...),
        )
    return out


def load_examples() -> dict[str, dict[str, Any]]:
    """examples/<type>.json (one valid body per event type), when the checkout has them."""
    out = {}
    if EXAMPLES_DIR.is_dir():
        for path in sorted(EXAMPLES_DIR.glob("*.json")):
            try:
                body = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if isinstance(body, dict) and "type" in body:
                out[str(body["type"])] = body
    return out


def _webhook_openapi() -> dict[str, Any]:
    models = envelope_models()
    examples = load_examples()
    refs = [{"$ref": f"#/components/schemas/{m.__name__}"} for m in models.values()]
    return {
        "parameters": [
            {"name": h, "in": "header", "required": False, "schema": {"type": "string"},
             "description": d}
            for h, d in (("webhook-id", "the delivery's idempotency key"),
                         ("webhook-timestamp", "Unix seconds; within 5 minutes of now"),
                         ("webhook-signature", "v1,<base64 HMAC-SHA256 of '{id}.{timestamp}.{body}'>, "
                                               "space-separated when several"))
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {
                "schema": {"oneOf": refs, "discriminator": {"propertyName": "type", "mapping": {
                    t.value: f"#/components/schemas/{m.__name__}" for t, m in models.items()}}},
                "examples": {t: {"summary": t, "value": body} for t, body in examples.items()},
            }},
        },
    }


def _custom_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        _, defs = models_json_schema([(m, "validation") for m in envelope_models().values()],
                                     ref_template="#/components/schemas/{model}")
        schema.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
        app.openapi_schema = schema
        return schema

    return openapi


# --- the app ----------------------------------------------------------------------------------------------
def create_app(settings: Settings, *, engine: AsyncEngine | None = None, client: Client | None = None,
               client_provider: ClientGetter | None = None, tracing: tracing_.Tracing | None = None,
               erp: ErpPort | None = None) -> FastAPI:
    """The HTTP service. Pass `engine`/`client` (tests), or let it create the engine from
    `settings.database_url` and connect to Temporal on first use. The read API reads stock and master data
    through `erp` (default: the PostgreSQL stub on the engine). With `tracing` (config/tracing.py) every
    request is traced, and so are the engine it creates and the client it connects; a `client` passed in carries
    its own interceptors."""
    owns_engine = engine is None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.engine is None:
            if not settings.database_url:
                raise RuntimeError("RETAILFLOW_DATABASE_URL is not set")
            # the schema this service reads and writes (webhook_deliveries); idempotent, serialised with the
            # worker's own upgrade by an advisory lock, so whichever starts first migrates
            await upgrade(settings.database_url)
            app.state.engine = create_engine(
                settings.database_url, statement_timeout=settings.database_statement_timeout.total_seconds(),
                pool_timeout=settings.database_pool_timeout.total_seconds(),
                connect_timeout=settings.database_connect_timeout.total_seconds())
            app.state.ingress.engine = app.state.engine
            if app.state.erp is None:
                app.state.erp = PostgresErp(app.state.engine)
            if tracing is not None:
                tracing.instrument_engine(app.state.engine)
        # delivery records purged after their retention, stale claims swept (starters/housekeeping.py)
        sweeper = asyncio.create_task(run_periodically(app.state.engine, settings.webhook_delivery_retention))
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            if owns_engine and app.state.engine is not None:
                await app.state.engine.dispose()

    app = FastAPI(
        title="retailflow",
        version="0.1.0",
        description="Webhook ingress (Standard Webhooks) and the read API of retailflow's retail processes. "
                    "Errors are application/problem+json (RFC 9457).",
        lifespan=lifespan,
    )
    get_client: ClientGetter = client_provider or ClientProvider(
        settings, client, interceptors=[tracing.interceptor] if tracing is not None else None)
    app.state.settings = settings
    app.state.engine = engine
    app.state.erp = erp if erp is not None or engine is None else PostgresErp(engine)
    app.state.get_client = get_client
    app.state.ingress = Ingress(settings, engine, get_client)  # type: ignore[arg-type]
    # the door's metrics (starters/door_metrics.py), observed inside CatchAll, served by `serve` on their own port
    app.state.door_metrics = door_metrics.DoorMetrics()
    door_metrics.install(app, app.state.door_metrics,
                         {*SOURCE_EVENTS, *settings.webhook_sources, *settings.webhook_secrets, shopify.SOURCE})
    app.add_middleware(BodyGuard, timeout=settings.http_body_timeout.total_seconds(),
                       max_bytes=settings.webhook_max_body_bytes)
    problems.install(app)
    if tracing is not None:
        tracing.instrument_app(app)

    @app.get("/healthz", tags=["health"], summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="Temporal and the database are reachable",
             responses=problems.responses(503))
    async def readyz(request: Request) -> JSONResponse:
        checks = {"temporal": await _temporal_ok(request), "database": await _database_ok(request)}
        if all(checks.values()):
            # findings do not make the service unready (it still takes events), but monitoring reads them here
            findings = await _findings(request)
            return JSONResponse({"status": "ready", "checks": checks, "findings": findings})
        down = ", ".join(k for k, ok in checks.items() if not ok)
        return JSONResponse({**problems.unavailable(f"not reachable: {down}").body(request.url.path),
                             "checks": checks}, status_code=503, headers={"Retry-After": "5"},
                            media_type=problems.PROBLEM_JSON)

    webhook_answers = {
        200: {"model": OrderDecision, "description": "order.placed: the reservation decision"},
        202: {"model": WebhookAccepted, "description": "accepted: started, signalled or duplicate"},
        **problems.responses(400, 401, 403, 404, 408, 409, 413, 422, 429, 503),
    }

    @app.post("/webhooks/shopify", tags=["webhooks"], responses={**webhook_answers},
              summary="Shopify orders/create (native format, X-Shopify-Hmac-Sha256), as order.placed",
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": shopify.ShopifyOrder.model_json_schema()}}}})
    async def shopify_webhook(request: Request) -> JSONResponse:
        return await shopify.receive(app.state.ingress, request)

    @app.post("/webhooks/{source}", tags=["webhooks"], responses={**webhook_answers},
              summary="One business event from a source (Standard Webhooks signature)",
              openapi_extra=_webhook_openapi())
    async def webhook(request: Request, source: str) -> JSONResponse:
        return await app.state.ingress.receive(request, source)

    app.include_router(read_api.router)
    app.openapi = _custom_openapi(app)  # type: ignore[method-assign]
    return app


async def _temporal_ok(request: Request) -> bool:
    try:
        client = await request.app.state.get_client()
        return bool(await client.service_client.check_health(timeout=timedelta(seconds=3)))
    except Exception:  # noqa: BLE001
        return False


async def _findings(request: Request) -> list[dict[str, Any]]:
    """What monitoring should know although the service is up: a reconciliation that has not run lately."""
    try:
        async with asyncio.timeout(3):
            fresh = await read_api.reconciliation_freshness(request.app.state.engine, request.app.state.settings)
    except Exception:  # noqa: BLE001 - a finding that cannot be read is not one
        return []
    return [] if fresh["fresh"] else [{"finding": "reconciliation_stale", **fresh}]


async def _database_ok(request: Request) -> bool:
    engine: AsyncEngine | None = request.app.state.engine
    if engine is None:
        return False
    try:
        async with asyncio.timeout(3):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001
        return False


# --- serving ----------------------------------------------------------------------------------------------
class _Server(uvicorn.Server):
    """uvicorn, but a SIGTERM/SIGINT ends `serve` normally (exit code 0) after a graceful shutdown, instead of
    re-raising the signal once the server has stopped."""

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def server(settings: Settings, app: FastAPI | None = None) -> uvicorn.Server:
    """uvicorn on the guarded h11 protocol (starters/guard.py): header timeout, connections per client, all
    connections bounded (over `http_max_connections` a request gets 503), idle keep-alive closed after
    `KEEP_ALIVE_S`."""
    config = uvicorn.Config(app or create_app(settings), host=settings.http_host, port=settings.http_port,
                            log_config=None, lifespan="on", timeout_graceful_shutdown=10,
                            http=protocol_for(settings), limit_concurrency=settings.http_max_connections,
                            timeout_keep_alive=KEEP_ALIVE_S, h11_max_incomplete_event_size=16 * 1024,
                            proxy_headers=False)
    return _Server(config)


def serve(settings: Settings) -> int:
    """Run the HTTP service until SIGTERM/SIGINT; returns the exit code (0 after a clean shutdown)."""
    if not settings.database_url:
        log.error("RETAILFLOW_DATABASE_URL is not set; `retailflow api` needs the PostgreSQL the worker uses "
                  "(`retailflow dev` starts an embedded one)")
        return 2
    try:
        check_startup(settings)
    except UnsafeConfiguration as unsafe:
        log.error("%s", unsafe)
        return 2
    tracing = tracing_.configure(settings, "retailflow-api")
    app = create_app(settings, tracing=tracing)
    metrics = door_metrics.serve(app.state.door_metrics, settings.http_metrics_host, settings.http_metrics_port)
    srv = server(settings, app)
    try:
        # uvicorn's own loop choice (uvloop where installed, as `uvicorn.run` makes it): `serve()` alone would
        # run on the default asyncio loop
        with asyncio.Runner(loop_factory=srv.config.get_loop_factory()) as runner:
            runner.run(srv.serve())
    finally:
        if metrics is not None:
            metrics.shutdown()
        if tracing is not None:
            tracing.shutdown()
    return 0 if srv.started or srv.should_exit else 1

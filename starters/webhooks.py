"""`POST /webhooks/{source}`: verify, validate, de-duplicate (persistence.deliveries), dispatch, answer. Each step
answers its own problem and none starts or records anything; the steps and the answers: docs/door.md."""
import asyncio
import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import stamina
from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError

from client.dispatch import DispatchResult, dispatch
from config import tracing
from config.logging import bind
from config.settings import Settings
from domain.errors import DomainError, ErrorType
from domain.events import EVENT_DATA, SOURCE_EVENTS, Event, EventType, WebhookBody
from domain.ids import webhook_event_id
from domain.late import ClosedProcess
from domain.routing import OPENING_EVENTS, Route, route
from persistence import deliveries, unopened
from starters import door_metrics
from starters.guard import loads_bounded
from starters.problems import Problem, field_errors, unavailable
from starters.signatures import SignatureError, verify

log = logging.getLogger("retailflow.webhooks")

# Events a process sends another: never accepted from outside.
INTERNAL_EVENTS = frozenset({EventType.ORDER_SHIPPED, EventType.ORDER_CLOSED})
WEBHOOK_EVENTS = [t for t in EventType if t not in INTERNAL_EVENTS]


class WebhookAccepted(BaseModel):
    """The answer to every event but a decided order.placed."""

    status: Literal["started", "signalled", "duplicate", "late"]
    workflow_id: str
    case_id: str | None = None  # late only: the exception case that tells ops


class TemporalUnavailable(Exception):
    """Temporal cannot be reached right now (answered 503 + Retry-After)."""


class ClaimPending(Exception):
    """The first delivery of this webhook-id still holds its claim: wait for its answer (retried, not logged)."""

    quiet_retry = True  # an expected wait, not a fault: config.logging does not log its retries


def allowed_events(source: str, settings: Settings) -> frozenset[EventType] | None:
    """The event types `source` may send; None for a source nobody configured."""
    if source in settings.webhook_sources:
        out = set()
        for name in settings.webhook_sources[source]:
            try:
                out.add(EventType(name))
            except ValueError:
                log.warning("webhook_sources[%s]: unknown event type %r ignored", source, name)
        return frozenset(out - INTERNAL_EVENTS)
    return SOURCE_EVENTS.get(source)


# --- step 1: the raw body ----------------------------------------------------------------------------------
async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise Problem(400, "Content-Length is not a number", slug="bad-request") from None
        if size > limit:
            raise Problem(413, f"the body is {size} bytes; the limit is {limit}", slug="too-large")
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise Problem(413, f"the body is over the limit of {limit} bytes", slug="too-large")
        chunks.append(chunk)
    return b"".join(chunks)


# --- step 3: the event ------------------------------------------------------------------------------------
def parse_event(body: bytes, source: str, webhook_id: str, settings: Settings) -> Event:
    try:
        raw = loads_bounded(body, settings.http_max_json_depth)
    except ValueError as bad:  # not UTF-8, not JSON, or nested too deep: permanent, never a 503
        raise Problem(400, f"the body is not JSON: {bad}", slug="not-json") from None
    if not isinstance(raw, dict):
        raise Problem(422, "the body must be a JSON object {type, timestamp, data}", slug="validation")
    try:
        envelope = WebhookBody.model_validate(raw)
    except ValidationError as bad:
        raise Problem(422, "the body does not match the webhook envelope", slug="validation",
                      errors=field_errors(bad)) from None
    allowed = allowed_events(source, settings) or frozenset()
    door_metrics.seen(envelope.type)
    if envelope.type not in allowed:
        raise Problem(403, f"source '{source}' may not send '{envelope.type}'", slug="event-not-allowed")
    try:
        data = EVENT_DATA[envelope.type].model_validate(envelope.data)
    except ValidationError as bad:
        raise Problem(422, f"the data of '{envelope.type}' does not match its schema", slug="validation",
                      errors=field_errors(bad, ("data",))) from None
    return Event(event_id=webhook_event_id(source, webhook_id), type=envelope.type, occurred_at=envelope.timestamp,
                 source=source, data=data)


# --- processes opened without their opening event: a limit per source ---------------------------------------
def opener_of(r: Route) -> str:
    """The workflow whose opening delivery vouches for `r`'s process: a settlement is opened inside retailflow
    (ReserveToFulfill hands it over), so its order's `order.placed` vouches for it."""
    if r.process == "settle":
        return r.workflow_id.replace("settle:", "order:", 1)
    return r.workflow_id


async def admit_unopened(engine: AsyncEngine, source: str, webhook_id: str, r: Route, settings: Settings) -> None:
    """A non-opening event for a process nobody opened starts it, waiting for its opening event; a source may
    have at most `unopened_process_limit` such processes, each holding at most `unopened_event_limit` events
    (persistence.unopened), else 429."""
    try:
        await unopened.admit(engine, source, webhook_id, r.workflow_id, opener_of(r),
                             settings.unopened_process_limit, settings.unopened_event_limit)
    except unopened.TooManyHeld as full:
        raise Problem(429, f"{r.workflow_id} has not received its opening event and already holds {full.held} "
                           f"events (limit {full.limit}); send its opening event first",
                      slug="too-many-held", headers={"Retry-After": "60"}) from None
    except unopened.TooManyUnopened as full:
        raise Problem(429, f"source '{source}' already has {full.waiting} processes that never received their "
                           f"opening event (limit {full.limit}); send the opening events first",
                      slug="too-many-unopened", headers={"Retry-After": "60"}) from None


# --- the whole delivery -----------------------------------------------------------------------------------
class Ingress:
    """The webhook handler's collaborators: settings, the database, and a way to get a Temporal client."""

    def __init__(self, settings: Settings, engine: AsyncEngine, get_client: Any) -> None:
        self.settings = settings
        self.engine = engine
        self.get_client = get_client  # async () -> Client, raising TemporalUnavailable

    async def receive(self, request: Request, source: str) -> JSONResponse:
        settings = self.settings
        allowed = allowed_events(source, settings)
        if allowed is None:
            raise Problem(404, f"no webhook source '{source}'", slug="unknown-source")
        body = await read_body(request, settings.webhook_max_body_bytes)
        try:
            webhook_id = verify(request.headers, body, settings.secrets_for(source),
                                tolerance=settings.webhook_tolerance)
        except SignatureError as bad:
            raise Problem(401, str(bad), slug="signature", headers={"WWW-Authenticate": "webhook-signature"}) from None
        event = parse_event(body, source, webhook_id, settings)
        client = await self._client()
        return await self.deliver(client, source, webhook_id, event, body)

    async def _client(self) -> Client:
        try:
            return await self.get_client()
        except TemporalUnavailable as down:
            door_metrics.cause("temporal_unreachable")
            raise unavailable(f"Temporal cannot be reached: {down}") from None

    async def deliver(self, client: Client, source: str, webhook_id: str, event: Event, body: bytes
                      ) -> JSONResponse:
        """Claim, dispatch and record one verified, valid delivery (also used by the Shopify route)."""
        r = route(event)
        door_metrics.seen(event.type)
        attributes = {tracing.SOURCE: source, tracing.EVENT_TYPE: str(event.type), tracing.WEBHOOK_ID: webhook_id,
                      tracing.BUSINESS_KEY: r.business_key, tracing.WORKFLOW_ID: r.workflow_id}
        tracing.annotate(**attributes)  # on the HTTP request's span, where a trace search finds them
        with tracing.span("webhook.deliver", **attributes):
            prior, closed = await self._claim(source, webhook_id, event, r, body)
            if prior is None:
                return await self._first(client, source, webhook_id, event, r, closed)
            return await self._again(client, source, webhook_id, event, r, prior, closed)

    async def _claim(self, source: str, webhook_id: str, event: Event, r: Route, body: bytes
                     ) -> tuple[deliveries.Delivery | None, ClosedProcess | None]:
        """(prior, closed). prior is None when this request dispatches: it won the claim, or the first delivery
        still holds it after the wait bound (still at work, or it died holding the claim: a crash; dispatch is
        idempotent); else the first delivery's answered row. closed: the ended process the event is late for.
        Waits with jittered backoff (stamina) while the first is at work."""
        sha = hashlib.sha256(body).hexdigest()
        closed: ClosedProcess | None = None
        try:
            async for attempt in stamina.retry_context(on=ClaimPending, attempts=None, timeout=self._wait_bound(),
                                                       wait_initial=0.05, wait_max=0.5, wait_jitter=0.05):
                with attempt:
                    with tracing.span("webhook.claim"), _reused(webhook_id):
                        arrival = await self._db(deliveries.arrive(
                            self.engine, source, webhook_id, str(event.type), r.workflow_id, sha, opens=r.opens,
                            opener=opener_of(r)))
                        closed, prior = arrival.closed, arrival.prior
                        if not arrival.claimed and prior is None:
                            # never opened (admit it first), or a concurrent first delivery committed meanwhile;
                            # an event for an ended process is late, not unopened: it never counts against a limit
                            if not r.opens and closed is None:
                                await self._db(admit_unopened(self.engine, source, webhook_id, r, self.settings))
                            prior = await self._db(deliveries.claim(self.engine, source, webhook_id,
                                                                    str(event.type), r.workflow_id, sha))
                    if prior is not None and prior.status != "done":
                        raise ClaimPending(webhook_id)
                    return prior, closed
        except ClaimPending:
            pass
        return None, closed

    async def _db(self, call: Any) -> Any:
        """One database step of a delivery, bounded in time: a locked, frozen or unreachable database is a 503
        with Retry-After (nothing recorded), answered within `database_statement_timeout`, never a hang."""
        try:
            async with asyncio.timeout(self.settings.database_statement_timeout.total_seconds()):
                return await call
        except (SQLAlchemyError, OSError, TimeoutError) as down:
            log.warning("database step of a delivery failed: %s", type(down).__name__)
            door_metrics.cause("database")
            raise unavailable("the database cannot be reached right now; nothing was recorded") from None

    def _wait_bound(self) -> float:
        return max(2 * self.settings.order_decision_timeout.total_seconds(), 10.0) + 5.0

    async def _first(self, client: Client, source: str, webhook_id: str, event: Event, r: Route,
                     closed: ClosedProcess | None) -> JSONResponse:
        recorded = False
        try:
            code, response = await self._dispatch(client, event, r, closed)
            with tracing.span("webhook.answer"):
                await self._db(deliveries.answer(self.engine, source, webhook_id, code, response,
                                                 opened=r.workflow_id if event.type in OPENING_EVENTS else None))
            recorded = True
            return _json(code, response)
        finally:
            if not recorded:
                try:
                    async with asyncio.timeout(self.settings.database_statement_timeout.total_seconds()):
                        await asyncio.shield(deliveries.forget(self.engine, source, webhook_id))
                except Exception:  # noqa: BLE001 - the original error is what the sender must see
                    log.exception("could not remove the claim of delivery %s/%s", source, webhook_id)

    async def _again(self, client: Client, source: str, webhook_id: str, event: Event, r: Route,
                     prior: deliveries.Delivery, closed: ClosedProcess | None) -> JSONResponse:
        """A redelivery: the first answer, except an order whose decision was late is asked again."""
        door_metrics.duplicate()
        if event.type is EventType.ORDER_PLACED and prior.http_status == 202 and \
                (prior.response or {}).get("status") not in ("duplicate", "late"):
            code, response = await self._dispatch(client, event, r, closed)
            if code == 200:
                await self._db(deliveries.answer(self.engine, source, webhook_id, code, response))
            return _json(code, response)
        return _json(prior.http_status or 202, prior.response or {})

    async def _dispatch(self, client: Client, event: Event, r: Route, ended: ClosedProcess | None
                        ) -> tuple[int, dict]:
        # the registry row was read with the claim (deliveries.arrive); a process that ends after that refuses
        # the start (REJECT_DUPLICATE), and dispatch hands the event to a LateEvent all the same
        async def closed(_workflow_id: str) -> ClosedProcess | None:
            return ended

        try:
            with bind(event.event_id):
                if event.type is EventType.ORDER_PLACED:
                    result = await dispatch(client, event, self.settings, route=r, closed=closed,
                                            decision_timeout=self.settings.order_decision_timeout)
                else:
                    result = await asyncio.wait_for(
                        dispatch(client, event, self.settings, route=r, closed=closed), timeout=30)
        except WorkflowUpdateFailedError as refused:
            cause = refused.cause
            detail = getattr(cause, "message", None) or str(cause or refused)
            raise Problem(409, f"the process refused the event: {detail}", slug="refused") from None
        except (RPCError, TimeoutError, RuntimeError) as down:
            log.warning("dispatch of %s to %s failed: %s", event.event_id, r.workflow_id, down)
            door_metrics.cause("temporal_dispatch")
            raise unavailable(f"Temporal cannot take the event right now: {down}") from None
        if result.status == "late":
            door_metrics.late()
        return _result(result)


@contextmanager
def _reused(webhook_id: str) -> Iterator[None]:
    """The same webhook-id with another body: 409, nothing recorded."""
    try:
        yield
    except DomainError as reused:
        if reused.type is not ErrorType.IDEMPOTENCY_CONFLICT:
            raise
        raise Problem(409, f"webhook-id {webhook_id} was already delivered with a different body; a new event "
                           "needs a new webhook-id", slug="webhook-id-reused") from None


def _result(result: DispatchResult) -> tuple[int, dict]:
    if result.decision is not None:
        return 200, result.decision.model_dump(mode="json")
    return 202, WebhookAccepted(status=result.status, workflow_id=result.workflow_id,
                                case_id=result.case_id).model_dump(exclude_none=result.status != "late")


def _json(code: int, body: dict) -> JSONResponse:
    return JSONResponse(body, status_code=code)

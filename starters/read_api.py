"""The read API (bearer token, JSON): processes from their `state` query or, once ended, the process registry;
stock and master data through the ERP port; exception cases; count decisions; the latest reconciliation.
Every route needs the `read` scope, actions the `ops` scope. Routes and paging: docs/door.md."""
import base64
import hmac
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from adapters.erp import ErpPort
from config.settings import Scope, Settings
from domain import ids
from domain.cases import CaseStatus, ResolveRequest
from domain.counts import DecisionRequest
from domain.inventory import Bucket
from domain.items import Item, Location
from persistence import reconciliation_runs
from persistence.registry import closed_process, late_events_of
from starters import exception_cases
from starters.counts import CountNotFound, CountRefused, CountUnanswered, decide
from starters.problems import Problem, responses, unavailable
from starters.webhooks import TemporalUnavailable

ID_PATTERN = r"^[A-Za-z0-9._\-]+$"
CASE_ID_PATTERN = r"^[A-Za-z0-9._:\-]+$"
IdPath = Annotated[str, Path(min_length=1, max_length=100, pattern=ID_PATTERN)]
QUERY_TIMEOUT = timedelta(seconds=10)

_bearer = HTTPBearer(auto_error=False, description="one of RETAILFLOW_API_TOKENS")


class Caller(BaseModel):
    """Who is asking: the name of the token presented and what it may do."""

    name: str
    scopes: frozenset[Scope]


def authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Caller:
    """The caller of a valid bearer token, else 401. Every token is compared, each in constant time."""
    given = (credentials.credentials if credentials else "").encode()
    found: Caller | None = None
    for name, token in request.app.state.settings.api_tokens.items():
        if hmac.compare_digest(given, token.token.get_secret_value().encode()) and found is None:
            found = Caller(name=name, scopes=token.scopes)
    if not credentials or found is None:
        raise Problem(401, "a valid bearer token is required", slug="unauthorized",
                      headers={"WWW-Authenticate": "Bearer"})
    request.state.caller = found
    return found


def require_scope(scope: Scope | str) -> Callable[..., Caller]:
    """A dependency: the caller, if its token has `scope` (401 without a valid token, 403 without the scope).
    `Depends(require_scope("ops"))` guards every action ops take (resolve a case, cancel, approve a count)."""
    wanted = Scope(scope)

    def dependency(caller: Caller = Depends(authenticate)) -> Caller:
        if wanted not in caller.scopes:
            raise Problem(403, f"token '{caller.name}' lacks the '{wanted}' scope", slug="forbidden")
        return caller

    dependency.__name__ = f"require_{wanted}_scope"
    return dependency


router = APIRouter(dependencies=[Depends(require_scope(Scope.READ))], responses=responses(401, 403, 422, 503))


# --- pagination: an opaque cursor (the last key of the page) and a Link header to the next page ----------------
PAGE_DEFAULT = 100
PAGE_MAX = 500
Limit = Annotated[int, Query(ge=1, le=PAGE_MAX, description=f"page size (default {PAGE_DEFAULT})")]
Cursor = Annotated[str | None, Query(max_length=600, description="`next_cursor` of the previous page")]


def encode_cursor(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, default=str).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, arity: int) -> list[Any] | None:
    if cursor is None:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, list) or len(key) != arity or not all(isinstance(k, str) for k in key):
        raise Problem(422, "the cursor is not one this API gave", slug="validation")
    return key


def link_next(request: Request, response: Response, cursor: str | None) -> None:
    if cursor is not None:
        url = request.url.include_query_params(cursor=cursor)
        response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'


# The ops-scoped door for count decisions (issue 21): the caller's token name is recorded as the decider.
require_ops = require_scope(Scope.OPS)


# --- answers ----------------------------------------------------------------------------------------------
class LocationStock(BaseModel):
    location_id: str
    buckets: dict[str, int]  # bucket -> base units (EA)


class InventoryAnswer(BaseModel):
    sku: str
    unit: str = "EA"
    locations: list[LocationStock]


class ExceptionsAnswer(BaseModel):
    cases: list[dict[str, Any]]
    next_cursor: str | None = None  # more cases: ask again with ?cursor=


NOTE_MAX = 2000


class ResolveBody(BaseModel):
    """What ops send to resolve a case. Who resolved it is the token's name, never the body's word: a
    `resolved_by` in the body is ignored (it once let a caller pass for the process itself)."""

    model_config = ConfigDict(extra="ignore")

    note: str = Field(min_length=1, max_length=NOTE_MAX, description="what was done (required)")


# --- helpers ----------------------------------------------------------------------------------------------
def _engine(request: Request) -> AsyncEngine:
    return request.app.state.engine


def _erp(request: Request) -> ErpPort:
    return request.app.state.erp


async def _client(request: Request) -> Client:
    try:
        return await request.app.state.get_client()
    except TemporalUnavailable as down:
        raise unavailable(f"Temporal cannot be reached: {down}") from None


async def process_state(request: Request, workflow_id: str) -> dict[str, Any]:
    engine = _engine(request)
    closed = await closed_process(engine, workflow_id)
    if closed is not None:
        late = await late_events_of(engine, workflow_id)
        return {**closed.state, "workflow_id": workflow_id, "closed_at": closed.closed_at.isoformat(),
                "outcome": closed.outcome,
                "late_events": [e.model_dump(mode="json", exclude={"payload", "process_workflow_id"}) for e in late]}
    client = await _client(request)
    try:
        state = await client.get_workflow_handle(workflow_id).query("state", rpc_timeout=QUERY_TIMEOUT)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise Problem(404, f"no process {workflow_id}", slug="not-found") from None
        raise unavailable(f"the process state cannot be read right now: {err.message}") from None
    except WorkflowQueryFailedError as err:
        raise unavailable(f"the process could not answer: {err}") from None
    if isinstance(state, BaseModel):
        state = state.model_dump(mode="json")
    if not isinstance(state, dict):
        state = {"state": state}
    state.setdefault("workflow_id", workflow_id)
    return state


STALE_AFTER_RUNS = 3  # a reconciliation is stale after missing this many of its scheduled runs


async def reconciliation_freshness(engine: AsyncEngine, settings: Settings) -> dict[str, Any]:
    """When the last reconciliation ran, and whether that is too long ago (a finding: /readyz, this API)."""
    last, now = await reconciliation_runs.last_run_at(engine)
    limit = settings.reconciliation_every * STALE_AFTER_RUNS
    return {"last_run_at": last.isoformat() if last else None, "stale_after": str(limit),
            "fresh": last is not None and now - last <= limit}


# --- routes -----------------------------------------------------------------------------------------------
PROCESS_RESPONSES = responses(404)


@router.get("/orders/{channel}/{order_id}", tags=["processes"], responses=PROCESS_RESPONSES,
            summary="An order's reserve-to-fulfill process state")
async def get_order(request: Request, channel: IdPath, order_id: IdPath) -> dict[str, Any]:
    return await process_state(request, ids.order_workflow_id(channel, order_id))


@router.get("/orders/{channel}/{order_id}/settlement", tags=["processes"], responses=PROCESS_RESPONSES,
            summary="An order's ship-to-settle process state")
async def get_settlement(request: Request, channel: IdPath, order_id: IdPath) -> dict[str, Any]:
    return await process_state(request, ids.settle_workflow_id(channel, order_id))


@router.get("/transfers/{transfer_id}", tags=["processes"], responses=PROCESS_RESPONSES,
            summary="A transfer's process state")
async def get_transfer(request: Request, transfer_id: IdPath) -> dict[str, Any]:
    return await process_state(request, ids.transfer_workflow_id(transfer_id))


@router.get("/returns/{return_id}", tags=["processes"], responses=PROCESS_RESPONSES,
            summary="A return's process state")
async def get_return(request: Request, return_id: IdPath) -> dict[str, Any]:
    return await process_state(request, ids.return_workflow_id(return_id))


@router.get("/purchase-orders/{po_id}", tags=["processes"], responses=PROCESS_RESPONSES,
            summary="A purchase order's receive-to-stock process state")
async def get_purchase_order(request: Request, po_id: IdPath) -> dict[str, Any]:
    return await process_state(request, ids.po_workflow_id(po_id))


@router.get("/counts/{count_id}", tags=["processes"], responses=PROCESS_RESPONSES,
            summary="A cycle count's count-to-adjust process state")
async def get_count(request: Request, count_id: IdPath) -> dict[str, Any]:
    return await process_state(request, ids.count_workflow_id(count_id))


class CountDecisionBody(BaseModel):
    note: Annotated[str, Field(min_length=1, max_length=500)]


async def _decide(request: Request, count_id: str, verdict: str, body: CountDecisionBody,
                  principal: Caller) -> dict[str, Any]:
    if not body.note.strip():
        raise Problem(422, "a note is required: say why", slug="validation")
    client = await _client(request)
    try:
        state = await decide(client, count_id, verdict,  # type: ignore[arg-type]
                             DecisionRequest(note=body.note, decided_by=principal.name))
    except CountNotFound as missing:
        raise Problem(404, str(missing), slug="not-found") from None
    except CountRefused as refused:
        raise Problem(409, str(refused), slug="refused") from None
    except CountUnanswered as late:
        raise unavailable(str(late)) from None
    except RPCError as err:
        raise unavailable(f"the count cannot be decided right now: {err.message}") from None
    return state.model_dump(mode="json")


@router.post("/counts/{count_id}/approve", tags=["processes"], responses=responses(404, 409),
             summary="Ops approve a count's variances beyond tolerance: they are adjusted (ops token)")
async def approve_count(request: Request, count_id: IdPath, body: CountDecisionBody,
                        principal: Annotated[Caller, Depends(require_ops)]) -> dict[str, Any]:
    return await _decide(request, count_id, "approve", body, principal)


@router.post("/counts/{count_id}/reject", tags=["processes"], responses=responses(404, 409),
             summary="Ops reject a count's variances beyond tolerance: nothing is adjusted (ops token)")
async def reject_count(request: Request, count_id: IdPath, body: CountDecisionBody,
                       principal: Annotated[Caller, Depends(require_ops)]) -> dict[str, Any]:
    return await _decide(request, count_id, "reject", body, principal)


@router.get("/vendor-returns/{rtv_id}", tags=["processes"], responses=PROCESS_RESPONSES,
            summary="A return to vendor's process state")
async def get_vendor_return(request: Request, rtv_id: IdPath) -> dict[str, Any]:
    return await process_state(request, ids.rtv_workflow_id(rtv_id))


@router.get("/inventory/{sku}", tags=["stock"], responses=responses(404), response_model=InventoryAnswer,
            summary="Every location's buckets for one SKU, in base units")
async def get_inventory(request: Request, sku: IdPath) -> InventoryAnswer:
    erp = _erp(request)
    if not await erp.items([sku]):
        raise Problem(404, f"no item {sku}", slug="not-found")
    stock = (await erp.stock([sku])).get(sku, {})
    locations = await erp.locations(None)
    zero = {b.value: 0 for b in Bucket}
    return InventoryAnswer(sku=sku, locations=[
        LocationStock(location_id=loc, buckets={**zero, **stock.get(loc, {})}) for loc in sorted(locations)
    ])


@router.get("/items", tags=["master data"], response_model=list[Item],
            summary="The item master, by SKU, a page at a time (Link: rel=next)")
async def list_items(request: Request, response: Response, limit: Limit = PAGE_DEFAULT, cursor: Cursor = None
                     ) -> list[Item]:
    after = decode_cursor(cursor, 1)
    page = await _erp(request).items_page(after[0] if after else None, limit + 1)
    link_next(request, response, encode_cursor([page[limit - 1].sku]) if len(page) > limit else None)
    return page[:limit]


@router.get("/items/{sku}", tags=["master data"], response_model=Item, responses=responses(404),
            summary="One item: units and pack conversions, price, cost")
async def get_item(request: Request, sku: IdPath) -> Item:
    found = await _erp(request).items([sku])
    if sku not in found:
        raise Problem(404, f"no item {sku}", slug="not-found")
    return found[sku]


@router.get("/locations", tags=["master data"], response_model=list[Location],
            summary="Stores and distribution centres: kind, legal entity, a page at a time (Link: rel=next)")
async def list_locations(request: Request, response: Response, limit: Limit = PAGE_DEFAULT,
                         cursor: Cursor = None) -> list[Location]:
    after = decode_cursor(cursor, 1)
    page = await _erp(request).locations_page(after[0] if after else None, limit + 1)
    link_next(request, response, encode_cursor([page[limit - 1].location_id]) if len(page) > limit else None)
    return page[:limit]


@router.get("/exceptions", tags=["exceptions"], response_model=ExceptionsAnswer,
            summary="Exception cases: kind, severity, business key, process, opened, deadline, resolution")
async def list_exceptions(request: Request, response: Response,
                          status: Annotated[CaseStatus | None, Query()] = None, limit: Limit = PAGE_DEFAULT,
                          cursor: Cursor = None) -> ExceptionsAnswer:
    after = decode_cursor(cursor, 2)
    if after is not None:
        try:
            opened = datetime.fromisoformat(after[0])
        except ValueError:
            raise Problem(422, "the cursor is not one this API gave", slug="validation") from None
    cases = await exception_cases.list_cases(
        _engine(request), status, limit=limit + 1,
        after=(opened, after[1]) if after is not None else None)
    more = len(cases) > limit
    cases = cases[:limit]
    next_cursor = encode_cursor([cases[-1].opened_at.isoformat(), cases[-1].exception_id]) if more else None
    link_next(request, response, next_cursor)
    return ExceptionsAnswer(cases=[c.model_dump(mode="json") for c in cases], next_cursor=next_cursor)


@router.post("/exceptions/{exception_id}/resolve", tags=["exceptions"], responses=responses(403, 404, 409),
             summary="Ops resolves an exception case")
async def resolve_exception(
    request: Request,
    exception_id: Annotated[str, Path(min_length=1, max_length=400, pattern=CASE_ID_PATTERN)],
    body: ResolveBody,
    caller: Annotated[Caller, Depends(require_scope(Scope.OPS))],
) -> dict[str, Any]:
    client = await _client(request)
    try:
        case = await exception_cases.resolve_case(client, exception_id,
                                                  ResolveRequest(note=body.note, resolved_by=caller.name))
    except exception_cases.CaseUnanswered as late:
        raise unavailable(str(late)) from None
    except exception_cases.CaseNotFound as missing:
        raise Problem(404, str(missing), slug="not-found") from None
    except exception_cases.CaseRefused as refusal:
        raise Problem(409, str(refusal), slug="refused") from None
    except RPCError as err:  # resolve_case answers NOT_FOUND itself: this is Temporal unavailable
        raise unavailable(f"the case cannot be resolved right now: {err.message}") from None
    return case.model_dump(mode="json")


@router.get("/reconciliation/latest", tags=["reconciliation"], responses=responses(404),
            summary="The last reconciliation run: when, what it checked, discrepancies found")
async def get_reconciliation(request: Request) -> dict[str, Any]:
    run = await reconciliation_runs.latest_run(_engine(request))
    if run is None:
        raise Problem(404, "no reconciliation run yet", slug="not-found")
    fresh = await reconciliation_freshness(_engine(request), request.app.state.settings)
    return {**run.model_dump(mode="json"), "stale": not fresh["fresh"], "stale_after": fresh["stale_after"]}

"""The read API: what ops and the channels ask (bearer token, JSON), answered from workflow queries and the
database.

- processes (`/orders/{channel}/{order_id}`, `/transfers/{id}`, `/returns/{id}`, `/purchase-orders/{id}`,
  `/counts/{id}`, `/vendor-returns/{id}`): the workflow's `state` query while the process runs; once it has
  ended, its final state from the process registry in PostgreSQL (no history replay, and still there after
  Temporal's retention), with the events that came after it ended; a 404 problem when there is no such process;
- ops' count decisions (`POST /counts/{id}/approve|reject`, `require_ops`): starters.counts;
- stock and master data (`/inventory/{sku}`, `/items`, `/items/{sku}`, `/locations`): the ERP tables;
- exception cases (`/exceptions`, `POST /exceptions/{id}/resolve`): starters.exceptions;
- `/reconciliation/latest`: `latest_reconciliation(engine)` (404 until a run exists).
"""
import hmac
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowQueryFailedError, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from activities.db.registry import closed_process, late_events_of
from domain import ids
from domain.cases import CaseStatus, ResolveRequest
from domain.inventory import Bucket
from domain.items import Item, Location
from starters.problems import Problem, responses, unavailable

ID_PATTERN = r"^[A-Za-z0-9._\-]+$"
CASE_ID_PATTERN = r"^[A-Za-z0-9._:\-]+$"
IdPath = Annotated[str, Path(min_length=1, max_length=100, pattern=ID_PATTERN)]
QUERY_TIMEOUT = timedelta(seconds=10)

_bearer = HTTPBearer(auto_error=False, description="one of RETAILFLOW_API_TOKENS")


def require_token(request: Request,
                  credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    tokens = [t.get_secret_value().encode() for t in request.app.state.settings.api_tokens]
    given = (credentials.credentials if credentials else "").encode()
    ok = False
    for token in tokens:  # constant time, and every token compared
        ok |= hmac.compare_digest(given, token)
    if not credentials or not ok:
        raise Problem(401, "a valid bearer token is required", slug="unauthorized",
                      headers={"WWW-Authenticate": "Bearer"})


class OpsPrincipal(BaseModel):
    """Who acts for ops through the API; recorded as the decider of what they decide."""

    name: str


def require_ops(request: Request,
                credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> OpsPrincipal:
    """The ops-scoped door (count decisions). Issue 18 brings token scopes and names: rebind this one dependency
    there. Until then every API token may act for ops and is named by its position in RETAILFLOW_API_TOKENS
    (never by its value)."""
    require_token(request, credentials)
    given = (credentials.credentials if credentials else "").encode()
    tokens = [t.get_secret_value().encode() for t in request.app.state.settings.api_tokens]
    index = next(i for i, token in enumerate(tokens) if hmac.compare_digest(given, token))
    return OpsPrincipal(name=f"api-token-{index + 1}")


router = APIRouter(dependencies=[Depends(require_token)], responses=responses(401, 422, 503))


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


# --- helpers ----------------------------------------------------------------------------------------------
def _engine(request: Request) -> AsyncEngine:
    return request.app.state.engine


async def _client(request: Request) -> Client:
    from starters.webhooks import TemporalUnavailable

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


async def latest_reconciliation(engine: AsyncEngine) -> dict[str, Any] | None:
    """The last reconciliation run (None until the reconciliation process stores its results)."""
    try:
        from activities import reconciliation  # type: ignore[attr-defined]
    except ImportError:
        return None
    latest = getattr(reconciliation, "latest_run", None)
    if latest is None:
        return None
    run = await latest(engine)
    return run.model_dump(mode="json") if isinstance(run, BaseModel) else run


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
                  principal: OpsPrincipal) -> dict[str, Any]:
    from domain.counts import DecisionRequest
    from starters.counts import CountNotFound, CountRefused, decide

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
    except RPCError as err:
        raise unavailable(f"the count cannot be decided right now: {err.message}") from None
    return state.model_dump(mode="json")


@router.post("/counts/{count_id}/approve", tags=["processes"], responses=responses(404, 409),
             summary="Ops approve a count's variances beyond tolerance: they are adjusted (ops token)")
async def approve_count(request: Request, count_id: IdPath, body: CountDecisionBody,
                        principal: Annotated[OpsPrincipal, Depends(require_ops)]) -> dict[str, Any]:
    return await _decide(request, count_id, "approve", body, principal)


@router.post("/counts/{count_id}/reject", tags=["processes"], responses=responses(404, 409),
             summary="Ops reject a count's variances beyond tolerance: nothing is adjusted (ops token)")
async def reject_count(request: Request, count_id: IdPath, body: CountDecisionBody,
                       principal: Annotated[OpsPrincipal, Depends(require_ops)]) -> dict[str, Any]:
    return await _decide(request, count_id, "reject", body, principal)


@router.get("/vendor-returns/{rtv_id}", tags=["processes"], responses=PROCESS_RESPONSES,
            summary="A return to vendor's process state")
async def get_vendor_return(request: Request, rtv_id: IdPath) -> dict[str, Any]:
    return await process_state(request, ids.rtv_workflow_id(rtv_id))


@router.get("/inventory/{sku}", tags=["stock"], responses=responses(404), response_model=InventoryAnswer,
            summary="Every location's buckets for one SKU, in base units")
async def get_inventory(request: Request, sku: IdPath) -> InventoryAnswer:
    from activities.adapters.stub_erp import PostgresErp

    erp = PostgresErp(_engine(request))
    if not await erp.items([sku]):
        raise Problem(404, f"no item {sku}", slug="not-found")
    stock = (await erp.stock([sku])).get(sku, {})
    locations = await erp.locations(None)
    zero = {b.value: 0 for b in Bucket}
    return InventoryAnswer(sku=sku, locations=[
        LocationStock(location_id=loc, buckets={**zero, **stock.get(loc, {})}) for loc in sorted(locations)
    ])


@router.get("/items", tags=["master data"], response_model=list[Item], summary="The item master")
async def list_items(request: Request) -> list[Item]:
    from activities.adapters.stub_erp import PostgresErp

    return await PostgresErp(_engine(request)).all_items()


@router.get("/items/{sku}", tags=["master data"], response_model=Item, responses=responses(404),
            summary="One item: units and pack conversions, price, cost")
async def get_item(request: Request, sku: IdPath) -> Item:
    from activities.adapters.stub_erp import PostgresErp

    found = await PostgresErp(_engine(request)).items([sku])
    if sku not in found:
        raise Problem(404, f"no item {sku}", slug="not-found")
    return found[sku]


@router.get("/locations", tags=["master data"], response_model=list[Location],
            summary="Stores and distribution centres: kind, legal entity")
async def list_locations(request: Request) -> list[Location]:
    from activities.adapters.stub_erp import PostgresErp

    found = await PostgresErp(_engine(request)).locations(None)
    return [found[k] for k in sorted(found)]


def _exceptions_module() -> Any:
    try:
        from starters import exceptions
    except ImportError:
        raise unavailable("exception cases are not available in this build yet") from None
    return exceptions


@router.get("/exceptions", tags=["exceptions"], response_model=ExceptionsAnswer,
            summary="Exception cases: kind, severity, business key, process, opened, deadline, resolution")
async def list_exceptions(request: Request, status: Annotated[CaseStatus | None, Query()] = None
                          ) -> ExceptionsAnswer:
    cases = await _exceptions_module().list_cases(_engine(request), status)
    return ExceptionsAnswer(cases=[c.model_dump(mode="json") if isinstance(c, BaseModel) else c for c in cases])


@router.post("/exceptions/{exception_id}/resolve", tags=["exceptions"], responses=responses(404, 409),
             summary="Ops resolves an exception case")
async def resolve_exception(
    request: Request,
    exception_id: Annotated[str, Path(min_length=1, max_length=400, pattern=CASE_ID_PATTERN)],
    body: ResolveRequest,
) -> dict[str, Any]:
    module = _exceptions_module()
    client = await _client(request)
    not_found = getattr(module, "CaseNotFound", LookupError)
    refused = getattr(module, "CaseRefused", WorkflowUpdateFailedError)
    try:
        result = await module.resolve_case(client, exception_id, body)
    except not_found as missing:
        raise Problem(404, str(missing) or f"no exception case {exception_id}", slug="not-found") from None
    except refused as refusal:
        raise Problem(409, str(refusal), slug="refused") from None
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise Problem(404, f"no exception case {exception_id}", slug="not-found") from None
        raise unavailable(f"the case cannot be resolved right now: {err.message}") from None
    except WorkflowUpdateFailedError as refused:
        detail = getattr(refused.cause, "message", None) or str(refused)
        raise Problem(409, f"the case refused the resolution: {detail}", slug="refused") from None
    except LookupError as missing:
        raise Problem(404, str(missing) or f"no exception case {exception_id}", slug="not-found") from None
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json")
    return result if isinstance(result, dict) else {"exception_id": exception_id, "result": result}


@router.get("/reconciliation/latest", tags=["reconciliation"], responses=responses(404),
            summary="The last reconciliation run: when, what it checked, discrepancies found")
async def get_reconciliation(request: Request) -> dict[str, Any]:
    run = await latest_reconciliation(_engine(request))
    if run is None:
        raise Problem(404, "no reconciliation run yet", slug="not-found")
    return run

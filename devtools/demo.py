"""`retailflow demo`: the dev stack plus a retail business day through the signed webhooks, then a summary.

The day (devtools.traffic.DayPlan): 200 orders across web, marketplace and POS, ship and pickup, cancellations
before and after pick, short picks, split shipments, transfers (one with a receipt variance), returns with mixed
dispositions, a purchase order received in two parts, cycle counts (one beyond tolerance, approved through the
API), a damaged lot returned to its vendor and credited, a few late and missing events that breach short demo SLAs, duplicate and out-of-order deliveries,
and adapter faults switched on. Then it checks that every process ended as its events call for, runs a
reconciliation and the invariant checker, and prints what happened and where to look in the Temporal UI.

Demo settings (short SLAs, faults) apply only where the corresponding RETAILFLOW_ variable is not set.
"""
import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from config.settings import FaultSpec, Settings
from devtools.stack import DevStack, run_dev
from devtools.traffic import DayPlan, Sender, Verdict, run_day, verify
from domain.sla import SlaKind

DEMO_SLA = {
    SlaKind.PICK_OVERDUE: timedelta(seconds=45),  # the late-pick orders send their pick after 60 s
    SlaKind.SETTLEMENT_OVERDUE: timedelta(seconds=45),  # the unsettled orders never send payment.settled
}
LATE_BY = timedelta(seconds=60)
DEMO_FAULTS = {"*": FaultSpec(failure_rate=0.03, latency_ms=10)}
PROCESS_OF_PREFIX = {"order": "ReserveToFulfill", "settle": "ShipToSettle", "transfer": "Transfer",
                     "return": "ReturnToRefund", "po": "ReceiveToStock", "count": "CountToAdjust",
                     "rtv": "VendorReturn"}


def demo_settings(settings: Settings) -> Settings:
    """Short SLAs, escalation every minute and light adapter faults, unless configured otherwise."""
    given = settings.model_fields_set
    update: dict[str, Any] = {}
    if "sla" not in given:
        update["sla"] = dict(DEMO_SLA)
    if "exception_escalate_every" not in given:
        update["exception_escalate_every"] = timedelta(minutes=1)
    if "faults" not in given:
        update["faults"] = dict(DEMO_FAULTS)
    if "transfer_receipt_grace" not in given:
        update["transfer_receipt_grace"] = timedelta(seconds=30)  # the short transfer's variance within the day
    return settings.model_copy(update=update)


@dataclass
class DemoSummary:
    seconds: float
    verdicts: list[Verdict]
    cases: Counter = field(default_factory=Counter)  # (kind, status) -> count
    reconciliation_ok: bool = False
    reconciliation_findings: int = 0
    invariants_ok: bool = False
    sender_stats: Counter = field(default_factory=Counter)
    ui_url: str = ""

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.verdicts) and self.reconciliation_ok and self.invariants_ok

    def by_process(self) -> Counter:
        return Counter((PROCESS_OF_PREFIX.get(v.expectation.workflow_id.split(":")[0], "?"),
                        f"{v.status}/{v.stage}", v.ok) for v in self.verdicts)


async def drive(stack: DevStack, plan: DayPlan, *, console: Console, seed: int = 7,
                concurrency: int = 8) -> DemoSummary:
    """Run the day against a started stack and gather the summary."""
    from activities.checker import check
    from client.schedules import run_reconciliation
    from persistence.engine import create_engine
    from starters.exception_cases import list_cases

    begun = time.monotonic()
    sender = Sender(stack.api_url, stack.settings.webhook_secrets, api_token=stack.api_token,
                    duplicate_share=0.05, seed=seed)
    client = await stack.client()
    total = len(plan.scenarios(random.Random(seed)))
    try:
        with Progress(TextColumn("[bold]retail day"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("{task.description}"), console=console, transient=False) as progress:
            task = progress.add_task("", total=total)
            expectations = await run_day(sender, plan, seed=seed, concurrency=concurrency, late_by=LATE_BY,
                                         expect_breaches=True, progress=lambda story: progress.update(task, advance=1, description=story))
            progress.update(task, description="waiting for every process to finish")
            verdicts = await verify(client, expectations, within=180)
        report = await run_reconciliation(client, stack.settings)
        invariants = await check(stack.database_url)
        engine = create_engine(stack.database_url, pool_size=1, max_overflow=0)
        try:
            cases = Counter((str(c.kind), str(c.status)) for c in await list_cases(engine, None, limit=10_000))
        finally:
            await engine.dispose()
    finally:
        await sender.close()
    return DemoSummary(seconds=time.monotonic() - begun, verdicts=verdicts, cases=cases,
                       reconciliation_ok=report.ok, reconciliation_findings=len(report.discrepancies),
                       invariants_ok=invariants.ok, sender_stats=sender.stats, ui_url=stack.ui_url)


def render(summary: DemoSummary, console: Console) -> None:
    processes = Table(title="Processes by type and outcome")
    for column in ("process", "ended", "count", "as expected"):
        processes.add_column(column)
    for (process, ended, ok), count in sorted(summary.by_process().items()):
        processes.add_row(process, ended, str(count), "yes" if ok else "[red]NO[/red]")
    console.print(processes)
    cases = Table(title="Exception cases by kind")
    for column in ("kind", "status", "count"):
        cases.add_column(column)
    for (kind, status), count in sorted(summary.cases.items()):
        cases.add_row(kind, status, str(count))
    console.print(cases)
    stats = summary.sender_stats
    console.print(f"Deliveries: {stats['events']} events, {stats['deliveries']} HTTP deliveries "
                  f"({stats['duplicate_deliveries']} sent twice on purpose, "
                  f"{sum(v for k, v in stats.items() if k.startswith('retried'))} retried); "
                  f"{stats['shuffled_processes']} processes had their events delivered out of order")
    console.print(f"Reconciliation: {'clean' if summary.reconciliation_ok else '[red]discrepancies[/red]'} "
                  f"({summary.reconciliation_findings} findings); invariants: "
                  f"{'hold' if summary.invariants_ok else '[red]VIOLATED[/red] (retailflow check)'}")
    failed = [v for v in summary.verdicts if not v.ok]
    for verdict in failed[:20]:
        console.print(f"[red]not as expected[/red]: {verdict.expectation.workflow_id} ({verdict.expectation.scenario}) "
                      f"is {verdict.status}/{verdict.stage}, expected {sorted(verdict.expectation.stages)}")
    ui = summary.ui_url
    console.print("\nOpen in the Temporal UI:")
    for label, query in [("SLA breached", "SlaBreached = true"),
                         ("open exception cases", "WorkflowType = 'ExceptionCase' AND ExecutionStatus = 'Running'"),
                         ("orders still open", "WorkflowType = 'ReserveToFulfill' AND ExecutionStatus = 'Running'"),
                         ("everything at DC-EAST", "LocationIds = 'DC-EAST'"),
                         ("counts ops decided", "WorkflowType = 'CountToAdjust' AND Stage = 'adjusted'")]:
        console.print(f"  {label:<22} {ui}/namespaces/default/workflows?query={_quote(query)}")
    console.print(f"Day finished in {summary.seconds:.0f}s: "
                  + ("[green]every process ended as expected[/green]" if summary.ok else "[red]see above[/red]"))


def _quote(query: str) -> str:
    from urllib.parse import quote

    return quote(query, safe="")


async def run_demo(settings: Settings, *, exit_after: bool = False, plan: DayPlan | None = None,
                   postgres_port: int | None = None, console: Console | None = None) -> int:
    """The `retailflow demo` command. Exit code 0 when every process ended as expected and reconciliation and the
    invariants are clean."""
    settings = demo_settings(settings)
    plan = plan or DayPlan()
    console = console or Console()
    outcome: dict[str, DemoSummary] = {}

    async def day(stack: DevStack) -> None:
        summary = await drive(stack, plan, console=console)
        render(summary, console)
        outcome["summary"] = summary
        if not exit_after:
            console.print("\nThe stack stays up for the UI; Ctrl-C stops it.")

    if exit_after:
        begun = time.monotonic()
        async with DevStack(settings, postgres_port=postgres_port, start_timeout=180,
                            say=lambda m: console.print(m)) as stack:
            console.print(stack.banner(time.monotonic() - begun))
            await day(stack)
        return 0 if outcome["summary"].ok else 1
    code = await run_dev(settings, postgres_port=postgres_port, ready=day)
    if code == 0 and "summary" in outcome and not outcome["summary"].ok:
        return 1
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(asyncio.run(run_demo(Settings(), exit_after=True)))

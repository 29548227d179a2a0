"""`python -m bench` / `retailflow bench`: every figure of bench/RESULTS.md in one run on one dev stack.

1. starts a dev stack of its own (Temporal dev server with its SQLite file, PostgreSQL, the retailflow worker, the
   HTTP service) on ports of its own, in a fresh data folder, plus the skeleton worker (bench/ceiling.py);
2. runs one real lifecycle and reads the shape of its two histories (activities, timers, upserts after each
   message), which the skeleton copies;
3. ceiling vs real lifecycles, alternating repetitions (bench/ceiling.py, bench/lifecycle.py);
4. order.placed decision latency at 1 and 10 senders vs bare update-with-start (bench/latency.py);
5. actions and history events per process, cost per 1,000 orders (bench/cost.py);
6. scale: open waiting orders up to each level, worker RSS and lifecycle throughput (bench/scale.py);
7. writes bench/results.json, the generated part of bench/RESULTS.md and bench/scale.png.

`--quick` runs the tiniest configuration (a smoke run of the whole harness).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import ceiling, cost
from bench.common import Spread, at_concurrency, load, machine, rss_mib

HERE = Path(__file__).parent


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="retailflow bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiniest configuration: proves the harness end to end")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--lifecycles", type=int, default=60, help="lifecycles per throughput repetition")
    p.add_argument("--concurrency", type=int, default=16, help="lifecycles in flight")
    p.add_argument("--latency-samples", type=int, default=100, help="order.placed per sender per repetition")
    p.add_argument("--levels", default="1000,10000,20000", help="open processes for the scale phase")
    p.add_argument("--scale-budget", type=float, default=45.0, help="minutes for the whole scale phase")
    p.add_argument("--fill-concurrency", type=int, default=24)
    p.add_argument("--skip", action="append", default=[], help="ceiling, latency, scale")
    p.add_argument("--port-base", type=int, default=17000, help="Temporal +233, UI +234, HTTP +800, PostgreSQL +433")
    p.add_argument("--data-dir", type=Path, default=None, help="default: a fresh temporary folder")
    p.add_argument("--out", type=Path, default=HERE)
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a worker setting for this run, e.g. --set max_cached_workflows=2000")
    p.add_argument("--py-spy", default=None, help="path of a py-spy binary: profile the worker and the HTTP service "
                   "during the first real-lifecycle repetition (collapsed stacks into --out)")
    a = p.parse_args(argv)
    if a.quick:
        a.reps, a.lifecycles, a.concurrency, a.latency_samples = 1, 3, 2, 3
        a.levels, a.scale_budget = "20", 2.0
    return a


def bench_settings(a: argparse.Namespace, data_dir: Path):  # noqa: ANN201
    from config.settings import Settings
    from domain.sla import SlaKind

    base = Settings()
    overrides = {}
    for item in a.set:
        name, _, value = item.partition("=")
        overrides[name] = type(getattr(base, name))(value)
    return base.model_copy(update={**overrides,
        "data_dir": data_dir,
        "temporal_address": f"127.0.0.1:{a.port_base + 233}",
        "temporal_ui_port": a.port_base + 234,
        "http_port": a.port_base + 800,
        "database_url": None,
        "webhook_secrets": {}, "api_tokens": [],
        # long SLAs: no clock fires during the run, the open orders wait on their timers
        "sla": {kind: timedelta(days=30) for kind in SlaKind},
        "reconciliation_every": timedelta(days=1),
        "log_level": "WARNING",
        # the latency phase measures the decision itself: a bound above the latencies seen here (below the sender's 30 s HTTP timeout), so no 202
        "order_decision_timeout": timedelta(seconds=25),
    })


async def top_up_stock(database_url: str, units: int = 200_000) -> None:
    """Receive `units` of every item at every DC so that no bench order is rejected for stock."""
    from adapters.stub_erp import PostgresErp
    from devtools.catalog import DISTRIBUTION_CENTERS, ITEMS
    from domain.inventory import MovementKind, MovementLine, MovementRequest
    from persistence.engine import create_engine

    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        erp = PostgresErp(engine)
        for dc in DISTRIBUTION_CENTERS:
            await erp.post_movement(MovementRequest(
                key=f"bench:topup:{dc}", kind=MovementKind.RECEIPT, reason="bench stock",
                lines=[MovementLine(sku=item.sku, location_id=dc, quantity=units) for item in ITEMS],
                workflow_id="bench", run_id="bench", reference=f"bench:{dc}"))
    finally:
        await engine.dispose()


def shape_of(count: cost.Count) -> ceiling.Shape:
    return ceiling.Shape(segments=[ceiling.SegmentSpec(message=s.message, activities=s.activities, timers=s.timers,
                                                       upserts=s.upserts) for s in count.segments])


async def wait_skeleton_poller(client, task_queue: str, proc: subprocess.Popen) -> None:  # noqa: ANN001
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    request = DescribeTaskQueueRequest(namespace=client.namespace, task_queue=TaskQueue(name=task_queue),
                                       task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW)
    for _ in range(200):
        if proc.poll() is not None:
            raise RuntimeError(f"skeleton worker exited with {proc.returncode}")
        if (await client.workflow_service.describe_task_queue(request)).pollers:
            return
        await asyncio.sleep(0.3)
    raise RuntimeError("skeleton worker did not poll")


def checkpoint(a: argparse.Namespace, results: dict) -> None:
    """The results so far (a long run that fails late still leaves its figures)."""
    if not a.quick:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "results.partial.json").write_text(json.dumps(results, indent=2, default=str) + "\n")


def say(text: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {text}", flush=True)


async def run(a: argparse.Namespace) -> dict:
    from bench import latency, lifecycle, scale
    from client.connect import connect
    from devtools.stack import DevStack
    from devtools.traffic import Sender

    results: dict = {"started": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine().as_dict(),
                     "load_at_start": load(), "args": {k: str(v) for k, v in vars(a).items()}}
    tmp = None
    if a.data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="retailflow-bench-")
        data_dir = Path(tmp.name)
    else:
        data_dir = a.data_dir
    settings = bench_settings(a, data_dir)
    stack = DevStack(settings, postgres_port=a.port_base + 433, say=say)
    skeleton: subprocess.Popen | None = None
    try:
        say(f"starting the bench stack in {data_dir}")
        await stack.start()
        s = stack.settings
        results["settings"] = {k: getattr(s, k) for k in (
            "max_concurrent_activities", "max_concurrent_workflow_tasks", "max_cached_workflows",
            "workflow_task_pollers", "activity_task_pollers", "order_decision_timeout")}
        results["settings"] = {k: str(v) for k, v in results["settings"].items()}
        skeleton = subprocess.Popen(  # noqa: ASYNC220 - started once, before any measurement
            [sys.executable, "-m", "bench.ceiling", "worker"], env=stack.env(),
                                    stdout=open(data_dir / "logs" / "skeleton.log", "ab"),  # noqa: SIM115, ASYNC230
                                    stderr=subprocess.STDOUT, start_new_session=True)
        client = await connect(s)
        await wait_skeleton_poller(client, ceiling.SKELETON_QUEUE, skeleton)
        await top_up_stock(stack.database_url)
        sender = Sender(stack.api_url, s.webhook_secrets, stack.api_token)
        worker_pid = stack.parts["worker"].pid
        a.api_pid = stack.parts["api"].pid
        try:
            await phases(a, results, client, sender, worker_pid, skeleton.pid, lifecycle, latency, scale)
        finally:
            await sender.close()
        results["load_at_end"] = load()
    finally:
        if skeleton is not None and skeleton.poll() is None:
            skeleton.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                skeleton.wait(10)
        await stack.stop()
        if tmp is not None:
            tmp.cleanup()
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    return results


async def phases(a, results, client, sender, worker_pid, skeleton_pid, lifecycle, latency, scale) -> None:  # noqa: ANN001, PLR0913, PLR0915
    # 1. one real lifecycle: its histories give the skeleton its shape and the first cost figures
    say("warm-up lifecycle, reading its shape")
    slow = lifecycle.QuiescentSender(sender.base_url, sender.secrets, sender.api_token)
    slow.client = client
    try:
        warm = await lifecycle.run_lifecycles(slow, client, 1, 1, seed=99)
    finally:
        await slow.close()
    order_id, settle_id = warm.workflow_ids[0]
    order_count = await cost.count_workflow(client, order_id)
    settle_count = await cost.count_workflow(client, settle_id)
    order_shape, settle_shape = shape_of(order_count), shape_of(settle_count)
    results["shape"] = {"order": order_shape.model_dump(), "settle": settle_shape.model_dump(),
                        "from": [order_id, settle_id]}

    # 2. ceiling and real lifecycles, alternating repetitions
    ceiling_rates, real_rates, real_ids, rejected = [], [], [], 0
    for rep in range(a.reps):
        if "ceiling" not in a.skip:
            run_id = f"c{rep}{int(time.time())}"
            rate = await at_concurrency(a.lifecycles, a.concurrency, lambda n, r=run_id: ceiling.skeleton_lifecycle(
                client, r, n, order_shape, settle_shape))
            ceiling_rates.append(rate)
            say(f"ceiling rep {rep + 1}: {rate:.2f} lifecycles/s")
            if rep == 0:  # the skeleton costs what the real lifecycle costs, by construction: checked here
                sk = [await cost.count_workflow(client, f"bench-{k}-{run_id}-0") for k in ("order", "settle")]
                results["skeleton_actions"] = {c.workflow_type + (" (order)" if i == 0 else " (settle)"): c.total
                                               for i, c in enumerate(sk)}
        profilers = start_profilers(a, {"worker": worker_pid, "api": a.api_pid}, "lifecycle") if rep == 0 else []
        real = await lifecycle.run_lifecycles(sender, client, a.lifecycles, a.concurrency, seed=rep)
        stop_profilers(profilers)
        real_rates.append(real.rate)
        real_ids += real.workflow_ids
        rejected += real.rejected
        say(f"real rep {rep + 1}: {real.rate:.2f} lifecycles/s ({real.rejected} rejected)")
    results["throughput"] = {"ceiling": Spread(ceiling_rates).as_dict(), "real": Spread(real_rates).as_dict(),
                             "lifecycles_per_rep": a.lifecycles, "concurrency": a.concurrency, "rejected": rejected,
                             "worker_rss_mib": rss_mib(worker_pid), "skeleton_rss_mib": rss_mib(skeleton_pid)}

    checkpoint(a, results)

    # 3. cost: actions and events per process type, from the histories of real lifecycles
    say("counting actions")
    sample = real_ids[: max(3, min(30, len(real_ids)))]
    per: dict[str, list[cost.Count]] = {"ReserveToFulfill": [], "ShipToSettle": []}
    for oid, sid in sample:
        per["ReserveToFulfill"].append(await cost.count_workflow(client, oid))
        per["ShipToSettle"].append(await cost.count_workflow(client, sid))
    results["cost"] = cost_summary(per)
    results["cost"]["other_processes"] = await other_process_costs(client, sender, n=3 if not a.quick else 1)

    checkpoint(a, results)

    # 4. latency
    if "latency" not in a.skip:
        lat: dict = {}
        for senders in (1, 10):
            real_p: dict[str, list[float]] = {"p50": [], "p95": [], "p99": []}
            bare_p: dict[str, list[float]] = {"p50": [], "p95": [], "p99": []}
            non = 0
            for rep in range(a.reps):
                r = await latency.real_latency(sender, senders, a.latency_samples if senders > 1
                                               else max(a.latency_samples // 2, 3))
                b = await latency.bare_latency(client, senders, a.latency_samples if senders > 1
                                               else max(a.latency_samples // 2, 3), ceiling.SKELETON_QUEUE)
                non += r.non_decisions
                for q in (50, 95, 99):
                    real_p[f"p{q}"].append(r.p(q))
                    bare_p[f"p{q}"].append(b.p(q))
                say(f"latency {senders} senders rep {rep + 1}: real p50/p99 {r.p(50):.0f}/{r.p(99):.0f} ms, "
                    f"bare {b.p(50):.0f}/{b.p(99):.0f} ms")
            lat[str(senders)] = {"real": {k: Spread(v).as_dict() for k, v in real_p.items()},
                                 "bare": {k: Spread(v).as_dict() for k, v in bare_p.items()},
                                 "samples_per_rep": a.latency_samples if senders > 1 else max(a.latency_samples // 2, 3),
                                 "non_decisions": non}
        results["latency"] = lat

        checkpoint(a, results)

    # 5. scale
    if "scale" not in a.skip:
        results["scale"] = await scale_phase(a, client, sender, worker_pid, lifecycle, scale, results)


async def scale_phase(a, client, sender, worker_pid, lifecycle, scale, results) -> dict:  # noqa: ANN001
    deadline = time.monotonic() + a.scale_budget * 60
    open_now = await count_open(client)
    levels = [int(x) for x in a.levels.split(",") if x]
    points = []
    for level in levels:
        per_s = None
        if level > open_now:
            say(f"opening {level - open_now} orders (now {open_now} open)")
            # keep time for the throughput repetitions at this level
            fill_deadline = deadline - 60 * max(1.0, a.reps * 0.5)
            opened, per_s = await scale.open_orders(sender, level - open_now, concurrency=a.fill_concurrency,
                                                    deadline=fill_deadline)
            say(f"opened {opened} at {per_s:.1f}/s")
        open_now = await count_open(client)
        rss_before = rss_mib(worker_pid)
        rates = []
        for rep in range(a.reps):
            if time.monotonic() > deadline and rates:
                break
            last = level == levels[-1] and rep == 0
            profilers = start_profilers(a, {"worker": worker_pid}, f"scale{level}") if last else []
            r = await lifecycle.run_lifecycles(sender, client, a.lifecycles, a.concurrency, seed=100 + rep)
            stop_profilers(profilers)
            rates.append(r.rate)
            say(f"{open_now} open, rep {rep + 1}: {r.rate:.2f} lifecycles/s, worker RSS {rss_mib(worker_pid):.0f} MiB")
        points.append({"target": level, "open": open_now, "rss_mib_before": rss_before,
                       "rss_mib_after": rss_mib(worker_pid), "throughput": Spread(rates).as_dict(),
                       "opened_per_s": per_s, "load": load()})
        results["scale"] = {"points": points, "budget_minutes": a.scale_budget}
        checkpoint(a, results)
        if open_now < level * 0.98 or time.monotonic() > deadline:
            say(f"scale budget reached at {open_now} open")
            break
    return {"points": points, "budget_minutes": a.scale_budget}


def start_profilers(a, pids: dict[str, int | None], phase: str) -> list[subprocess.Popen]:  # noqa: ANN001
    if not a.py_spy:
        return []
    procs = []
    for name, pid in pids.items():
        if pid is None:
            continue
        out = a.out / f"profile-{phase}-{name}.txt"
        procs.append(subprocess.Popen([a.py_spy, "record", "--pid", str(pid), "--rate", "50", "--format", "raw",
                                       "--output", str(out), "--nonblocking", "--subprocesses"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def stop_profilers(procs: list[subprocess.Popen]) -> None:
    import signal as signals

    for proc in procs:
        proc.send_signal(signals.SIGINT)  # py-spy writes its output on Ctrl-C
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)


async def count_open(client) -> int:  # noqa: ANN001
    # visibility in the dev server is eventually consistent: a close-enough count of running processes
    result = await client.count_workflows("ExecutionStatus = 'Running' AND WorkflowType = 'ReserveToFulfill'")
    return result.count


def cost_summary(per: dict[str, list[cost.Count]]) -> dict:
    out: dict = {"price": cost.PRICE_SOURCE, "price_per_million": cost.PRICE_PER_MILLION_USD, "processes": {}}
    lifecycle_totals = [o.total + s.total for o, s in zip(per["ReserveToFulfill"], per["ShipToSettle"], strict=True)]
    for wf_type, counts in per.items():
        reasons: dict[str, list[int]] = {}
        for c in counts:
            for reason in set().union(*(x.actions.keys() for x in counts)):
                reasons.setdefault(reason, []).append(c.actions.get(reason, 0))
        out["processes"][wf_type] = {
            "actions": Spread([c.total for c in counts]).as_dict(),
            "events": Spread([c.events for c in counts]).as_dict(),
            "by_reason_median": {r: statistics.median(v) for r, v in sorted(reasons.items())},
            "activity_types": dict(counts[0].activity_types) if counts else {},
            "sampled": len(counts),
        }
    out["lifecycle_actions"] = Spread(lifecycle_totals).as_dict()
    out["cost_per_1000_orders_usd"] = Spread([cost.cost_per_thousand(t) for t in lifecycle_totals]).as_dict()
    return out


async def other_process_costs(client, sender, n: int) -> dict:  # noqa: ANN001
    """`n` plain transfers and `n` returns (of a shipped order) through the webhooks, then their histories counted."""
    import random
    import uuid

    from devtools.traffic import Day, order_and_return, transfer

    run = f"X{uuid.uuid4().hex[:6]}"
    expected = []
    for i in range(n):
        expected += await transfer(Day(sender, random.Random(i), run), i, "plain")
        expected += await order_and_return(Day(sender, random.Random(100 + i), run), 100 + i)
    found: dict = {}
    for wf_type, prefix in (("Transfer", "transfer:"), ("ReturnToRefund", "return:")):
        counts = []
        for e in expected:
            if e.workflow_id.startswith(prefix):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.get_workflow_handle(e.workflow_id).result(), 120)
                    counts.append(await cost.count_workflow(client, e.workflow_id))
        if counts:
            found[wf_type] = {"actions": Spread([c.total for c in counts]).as_dict(),
                              "events": Spread([c.events for c in counts]).as_dict(),
                              "by_reason": dict(counts[0].actions)}
    return found


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    results = asyncio.run(run(a))
    a.out.mkdir(parents=True, exist_ok=True)
    if a.quick and a.out == HERE:  # a smoke run leaves the committed results alone
        a.out = Path(tempfile.gettempdir())
    name = "results-quick.json" if a.quick else "results.json"
    (a.out / name).write_text(json.dumps(results, indent=2, default=str) + "\n")
    from bench import report

    if not a.quick:
        report.write(results, a.out)
    print(report.summary(results))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

"""`python -m bench` / `retailflow bench`: every figure of bench/RESULTS.md in one run on one dev stack.

1. starts a dev stack of its own (Temporal dev server with its SQLite file, PostgreSQL, the retailflow worker, the
   HTTP service) on ports of its own, in a fresh data folder, plus the skeleton worker (bench/ceiling.py);
2. runs one real lifecycle and reads the shape of its two histories (activities, local activities, forwards,
   timers, upserts after each message), which the skeleton copies; checks the worker's modules have `.pyc`;
3. throughput: sweeps the lifecycles in flight (`--inflight`) until both the ceiling and the real lifecycles stop
   gaining, each level in repetitions of `--lifecycles`, a ceiling repetition next to every real one (the order
   alternates), and reports the paired ratios real/ceiling with their spread;
4. profiles (`--py-spy`), in repetitions of their own at the plateau, never in measured ones;
5. actions and history events per process, cost per 1,000 orders (bench/cost.py);
6. order.placed decision latency at 1 and 10 senders, each repetition next to a bare update-with-start one;
7. optionally (`--wft-slots`), the throughput at the plateau for a few `max_concurrent_workflow_tasks` values
   (the worker and the skeleton worker restarted with each);
8. scale: open waiting orders up to each level (bench/scale.py), the worker's RSS, paired throughput at the
   plateau against none open, and an event's latency to evicted and to cached orders;
9. writes bench/results.json, the generated part of bench/RESULTS.md (every figure beside its target, with a
   computed verdict: bench/targets.py) and bench/scale.png.

`--quick` runs the tiniest configuration (a smoke run of the whole harness, its worker cache cut to 10 runs so
the evicted-order path runs too); it writes nothing under bench/.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal as signals
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import ceiling, cost, shapes
from bench.common import Spread, at_concurrency, bytecode, cpu_seconds, load, machine, paired, rss_mib
from devtools.stack import DevStack
from devtools.stack import _child_setup as child_setup

HERE = Path(__file__).parent


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="retailflow bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiniest configuration: proves the harness end to end")
    p.add_argument("--reps", type=int, default=3, help="repetitions (pairs) per throughput level and latency")
    p.add_argument("--lifecycles", type=int, default=200, help="lifecycles per throughput repetition")
    p.add_argument("--inflight", default="8,16,32,64", help="lifecycles in flight, swept in this order")
    p.add_argument("--plateau-gain", type=float, default=0.05,
                   help="the sweep stops once a level gains less than this over the one before, for both")
    p.add_argument("--latency-samples", type=int, default=100, help="order.placed per sender per repetition")
    p.add_argument("--wft-slots", default="", help="max_concurrent_workflow_tasks values to sweep, e.g. 5,20,100")
    p.add_argument("--levels", default="1000,10000,20000",
                   help="open processes for the scale phase (+N: N more than open when the phase starts)")
    p.add_argument("--scale-budget", type=float, default=120.0, help="minutes for the whole scale phase")
    p.add_argument("--fill-path", choices=["client", "http"], default="client",
                   help="how the scale phase opens its orders (bench/scale.py)")
    p.add_argument("--fill-concurrency", type=int, default=48)
    p.add_argument("--evicted-samples", type=int, default=100, help="events to evicted (and to cached) orders")
    p.add_argument("--skip", action="append", default=[], help="latency, scale, others (transfers and returns)")
    p.add_argument("--reuse", type=Path, default=None,
                   help="an earlier results.json: each phase named in --skip takes its figures from it, and the "
                   "report names the run they come from")
    p.add_argument("--port-base", type=int, default=17000, help="Temporal +233, UI +234, HTTP +800, PostgreSQL +433")
    p.add_argument("--data-dir", type=Path, default=None, help="default: a fresh temporary folder")
    p.add_argument("--out", type=Path, default=HERE)
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a worker setting for this run, e.g. --set max_cached_workflows=2000")
    p.add_argument("--py-spy", nargs="?", const=str(Path(sys.executable).with_name("py-spy")), default=None,
                   help="profile the worker, the HTTP service and the skeleton worker in repetitions of their own "
                   "(collapsed stacks into --out), with this py-spy (alone: the dev group's, in the venv)")
    if p.parse_known_args(argv)[0].quick:  # the tiniest sizes, unless given
        p.set_defaults(reps=1, lifecycles=3, inflight="2", latency_samples=3, levels="+24", scale_budget=3.0,
                       fill_concurrency=8, evicted_samples=3)
    a = p.parse_args(argv)
    if a.quick:  # a cache of 10 runs (and as many workflow-task slots, which may not exceed it): orders get evicted
        a.set = ["max_cached_workflows=10", "max_concurrent_workflow_tasks=10", *a.set]
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


def shape_of(count: cost.Count) -> shapes.Shape:
    return shapes.Shape(segments=[shapes.SegmentSpec(
        message=s.message, activities=s.activities, forwards=s.forwards, local_activities=s.local_activities,
        timers=s.timers, upserts=s.upserts) for s in count.segments])


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


class Bench:
    """One run: the stack, the skeleton worker, the clients, and what every phase needs from them."""

    def __init__(self, a: argparse.Namespace, stack, data_dir: Path) -> None:  # noqa: ANN001
        self.a, self.stack, self.data_dir = a, stack, data_dir
        self.skeleton: subprocess.Popen | None = None
        self.client = self.sender = None
        self.order_shape = self.settle_shape = None

    @property
    def worker_pid(self) -> int | None:
        return self.stack.parts["worker"].pid

    @property
    def skeleton_pid(self) -> int | None:
        return self.skeleton.pid if self.skeleton is not None else None

    async def start_skeleton(self) -> None:
        log = open(self.data_dir / "logs" / "skeleton.log", "ab")  # noqa: SIM115, ASYNC230 - the child keeps it
        self.skeleton = subprocess.Popen(  # noqa: ASYNC220 - between measurements only
            [sys.executable, "-m", "bench.ceiling", "worker"], env=self.stack.env(), stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=child_setup())  # dies with the bench
        log.close()
        await wait_skeleton_poller(self.client, shapes.SKELETON_QUEUE, self.skeleton)

    def stop_skeleton(self) -> None:
        if self.skeleton is not None and self.skeleton.poll() is None:
            self.skeleton.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.skeleton.wait(20)
        self.skeleton = None

    async def with_worker_setting(self, **settings: object) -> None:
        """Restart the retailflow worker and the skeleton worker with `settings` (between measurements)."""
        self.stack.settings = self.stack.settings.model_copy(update=settings)
        self.stop_skeleton()
        await self.stack.restart("worker")
        await self.start_skeleton()
        # unmeasured: the new workers' first runs (imports, connections) are not what the setting costs
        await self.ceiling_rep(2, lifecycles=2)
        await self.real_rep(2, seed=500, lifecycles=2)

    async def ceiling_rep(self, inflight: int, lifecycles: int | None = None) -> float:
        run_id = f"c{inflight}x{time.monotonic_ns() % 10**9}"
        return await at_concurrency(lifecycles or self.a.lifecycles, inflight, lambda n: ceiling.skeleton_lifecycle(
            self.client, run_id, n, self.order_shape, self.settle_shape))

    async def real_rep(self, inflight: int, seed: int, lifecycles: int | None = None):  # noqa: ANN201
        from bench import lifecycle

        return await lifecycle.run_lifecycles(self.sender, self.client, lifecycles or self.a.lifecycles, inflight,
                                              seed=seed)

    def part_pids(self) -> dict[str, int | None]:
        """The processes whose CPU a repetition is charged: the stack's parts, the skeleton worker, the bench."""
        return {**{name: part.pid for name, part in self.stack.parts.items()}, "skeleton": self.skeleton_pid,
                "bench": os.getpid()}

    async def pairs(self, inflight: int, label: str, seed: int = 0) -> dict:
        """`reps` pairs of a ceiling and a real repetition at `inflight`; which runs first alternates. Each
        repetition is charged the CPU each part used during it, per lifecycle (`cpu_ms`)."""
        ceilings, reals, ids, rejected = [], [], [], 0
        cpu: dict[str, dict[str, list[float]]] = {"ceiling": {}, "real": {}}
        for rep in range(self.a.reps):
            for kind in (("ceiling", "real") if rep % 2 == 0 else ("real", "ceiling")):
                before = cpu_seconds(self.part_pids())
                if kind == "ceiling":
                    ceilings.append(await self.ceiling_rep(inflight))
                    done = self.a.lifecycles
                else:
                    real = await self.real_rep(inflight, seed=seed + rep)
                    reals.append(real.rate)
                    ids += real.workflow_ids
                    rejected += real.rejected
                    done = len(real.workflow_ids) or 1
                after = cpu_seconds(self.part_pids())
                for part, spent in after.items():
                    if part in before:
                        cpu[kind].setdefault(part, []).append((spent - before[part]) / done * 1000)
            say(f"{label}, {inflight} in flight, pair {rep + 1}: ceiling {ceilings[-1]:.2f}/s, real "
                f"{reals[-1]:.2f}/s ({reals[-1] / ceilings[-1]:.2f})")
        return {"ceiling": Spread(ceilings).as_dict(), "real": Spread(reals).as_dict(),
                "ratio": paired(reals, ceilings).as_dict(), "rejected": rejected, "ids": ids,
                "cpu_ms": {kind: {part: Spread(v).as_dict() for part, v in parts.items()} for kind, parts in cpu.items()},
                "worker_rss_mib": rss_mib(self.worker_pid), "skeleton_rss_mib": rss_mib(self.skeleton_pid),
                "load": load()}


async def run(a: argparse.Namespace) -> dict:
    from devtools.traffic import Sender

    results: dict = {"started": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine().as_dict(),
                     "load_at_start": load(), "args": {k: str(v) for k, v in vars(a).items()}}
    tmp = None
    if a.data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="retailflow-bench-")
        data_dir = Path(tmp.name)
    else:
        data_dir = a.data_dir
    stack = DevStack(bench_settings(a, data_dir), postgres_port=a.port_base + 433, say=say)
    b = Bench(a, stack, data_dir)
    try:
        say(f"starting the bench stack in {data_dir}")
        await stack.start()
        results["settings"] = worker_settings(stack.settings)
        b.client = await stack.client()
        await b.start_skeleton()
        await top_up_stock(stack.database_url)
        b.sender = Sender(stack.api_url, stack.settings.webhook_secrets, stack.api_token)
        try:
            await phases(b, results)
        finally:
            await b.sender.close()
        results["load_at_end"] = load()
    finally:
        b.stop_skeleton()
        await stack.stop()
        if tmp is not None:
            tmp.cleanup()
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    return results


def worker_settings(s) -> dict[str, str]:  # noqa: ANN001
    return {k: str(getattr(s, k)) for k in (
        "max_concurrent_activities", "max_concurrent_workflow_tasks", "max_cached_workflows",
        "workflow_task_pollers", "activity_task_pollers", "poller_behavior", "nonsticky_to_sticky_poll_ratio",
        "order_decision_timeout")}


async def phases(b: Bench, results: dict) -> None:
    a = b.a
    await warm_up(b, results)
    results["throughput"] = await throughput_sweep(b, results)
    checkpoint(a, results)
    plateau = results["throughput"]["plateau"]
    if a.py_spy:
        await profile_reps(b, plateau)
    say("counting actions")
    ids = results["throughput"]["levels"][str(plateau)].get("ids", [])
    results["cost"] = await costs(b, ids, others="others" not in a.skip)
    checkpoint(a, results)
    if "latency" not in a.skip:
        results["latency"] = await latencies(b)
        checkpoint(a, results)
    if a.wft_slots:
        results["wft_slots"] = await slot_sweep(b, results, plateau, [int(x) for x in a.wft_slots.split(",") if x])
        checkpoint(a, results)
    if "scale" not in a.skip:
        results["scale"] = await scale_phase(b, results)
    for level in results["throughput"]["levels"].values():
        level.pop("ids", None)


async def warm_up(b: Bench, results: dict) -> None:
    """One real lifecycle, sent slowly: its histories give the skeleton its shape."""
    from bench import lifecycle

    say("warm-up lifecycle, reading its shape")
    slow = lifecycle.QuiescentSender(b.sender.base_url, b.sender.secrets, b.sender.api_token)
    slow.client = b.client
    try:
        warm = await lifecycle.run_lifecycles(slow, b.client, 1, 1, seed=99)
    finally:
        await slow.close()
    order_id, settle_id = warm.workflow_ids[0]
    b.order_shape = shape_of(await cost.count_workflow(b.client, order_id))
    b.settle_shape = shape_of(await cost.count_workflow(b.client, settle_id))
    results["shape"] = {"order": b.order_shape.model_dump(), "settle": b.settle_shape.model_dump(),
                        "from": [order_id, settle_id]}
    results["bytecode"] = bytecode()  # the worker has imported what a lifecycle needs


async def throughput_sweep(b: Bench, results: dict) -> dict:
    """Levels of lifecycles in flight until neither series gains `plateau_gain` over the level before."""
    levels: dict[str, dict] = {}
    plateau, reached = None, False
    previous = None
    for inflight in [int(x) for x in b.a.inflight.split(",") if x]:
        level = levels[str(inflight)] = await b.pairs(inflight, "throughput")
        if "skeleton_actions" not in results:  # the skeleton costs what the real lifecycle costs, by construction
            results["skeleton_actions"] = await skeleton_actions(b)
        if previous is not None:
            gains = [level[k]["median"] / levels[str(previous)][k]["median"] - 1 for k in ("ceiling", "real")]
            if max(gains) < b.a.plateau_gain:
                plateau, reached = previous, True
                break
        previous = inflight
    if plateau is None:
        plateau = previous
    say(f"plateau: {plateau} in flight ({'reached' if reached else 'not reached: the last level'})")
    return {"levels": levels, "plateau": plateau, "plateau_reached": reached, "lifecycles_per_rep": b.a.lifecycles,
            "plateau_gain": b.a.plateau_gain}


async def skeleton_actions(b: Bench) -> dict:
    """Actions of one skeleton lifecycle against the real one's: what makes the ceiling a fair one."""
    run_id = f"check{time.monotonic_ns() % 10**9}"
    await ceiling.skeleton_lifecycle(b.client, run_id, 0, b.order_shape, b.settle_shape)
    order, settle = [await cost.count_workflow(b.client, f"bench-{k}-{run_id}-0") for k in ("order", "settle")]
    return {"order": order.total, "settle": settle.total}


async def profile_reps(b: Bench, inflight: int) -> None:
    """py-spy in repetitions of their own (never in measured ones): the real lifecycles with the worker and the
    HTTP service sampled, then the skeleton with its worker sampled."""
    say("profiling (unmeasured repetitions)")
    profilers = start_profilers(b.a, {"worker": b.worker_pid, "api": b.stack.parts["api"].pid}, "lifecycle")
    await b.real_rep(inflight, seed=77)
    stop_profilers(profilers)
    profilers = start_profilers(b.a, {"skeleton": b.skeleton_pid}, "lifecycle")
    await b.ceiling_rep(inflight)
    stop_profilers(profilers)


async def costs(b: Bench, ids: list[tuple[str, str]], *, others: bool) -> dict:
    per: dict[str, list[cost.Count]] = {"ReserveToFulfill": [], "ShipToSettle": []}
    for oid, sid in ids[: max(3, min(30, len(ids)))]:
        per["ReserveToFulfill"].append(await cost.count_workflow(b.client, oid))
        per["ShipToSettle"].append(await cost.count_workflow(b.client, sid))
    out = cost_summary(per)
    if others:
        out["other_processes"] = await other_process_costs(b.client, b.sender, n=1 if b.a.quick else 3)
    return out


async def latencies(b: Bench) -> dict:
    """order.placed through the door against a bare update-with-start, each repetition next to its pair."""
    from bench import latency

    out: dict = {}
    for senders in (1, 10):
        per_sender = b.a.latency_samples if senders > 1 else max(b.a.latency_samples // 2, 3)
        real_p: dict[str, list[float]] = {"p50": [], "p95": [], "p99": []}
        bare_p: dict[str, list[float]] = {"p50": [], "p95": [], "p99": []}
        non = 0
        for rep in range(b.a.reps):
            for kind in (("real", "bare") if rep % 2 == 0 else ("bare", "real")):
                if kind == "real":
                    r = await latency.real_latency(b.sender, senders, per_sender)
                    non += r.non_decisions
                    for q in (50, 95, 99):
                        real_p[f"p{q}"].append(r.p(q))
                else:
                    bare = await latency.bare_latency(b.client, senders, per_sender, shapes.SKELETON_QUEUE)
                    for q in (50, 95, 99):
                        bare_p[f"p{q}"].append(bare.p(q))
            say(f"latency {senders} sender(s) pair {rep + 1}: real p50/p99 {real_p['p50'][-1]:.0f}/"
                f"{real_p['p99'][-1]:.0f} ms, bare {bare_p['p50'][-1]:.0f}/{bare_p['p99'][-1]:.0f} ms")
        out[str(senders)] = {"real": {k: Spread(v).as_dict() for k, v in real_p.items()},
                             "bare": {k: Spread(v).as_dict() for k, v in bare_p.items()},
                             "ratio": {q: paired(real_p[q], bare_p[q]).as_dict() for q in ("p50", "p99")},
                             "samples_per_rep": per_sender, "non_decisions": non}
    return out


async def slot_sweep(b: Bench, results: dict, inflight: int, values: list[int]) -> dict:
    """Throughput pairs at the plateau for each `max_concurrent_workflow_tasks` (both workers restarted)."""
    original = b.stack.settings.max_concurrent_workflow_tasks
    out: dict = {"inflight": inflight, "values": {}}
    for value in values:
        say(f"max_concurrent_workflow_tasks={value}: restarting the workers")
        await b.with_worker_setting(max_concurrent_workflow_tasks=value)
        level = await b.pairs(inflight, f"wft slots {value}", seed=300)
        level.pop("ids")
        out["values"][str(value)] = level
        checkpoint(b.a, {**results, "wft_slots": out})
    await b.with_worker_setting(max_concurrent_workflow_tasks=original)
    return out


async def scale_phase(b: Bench, results: dict) -> dict:
    from bench import scale

    a = b.a
    deadline = time.monotonic() + a.scale_budget * 60
    plateau = results["throughput"]["plateau"]
    base = results["throughput"]["levels"][str(plateau)]["ratio"]
    cache = b.stack.settings.max_cached_workflows
    opened: list = []
    used: set[str] = set()
    points = []
    out = {"points": points, "budget_minutes": a.scale_budget, "fill_path": a.fill_path,
           "fill_path_text": scale.FILL_PATHS[a.fill_path], "inflight": plateau, "cache_size": cache}
    open_at_start = await count_open(b.client)
    for level in [x for x in a.levels.split(",") if x]:
        target = open_at_start + int(level[1:]) if level.startswith("+") else int(level)
        open_now = await count_open(b.client)
        per_s = None
        if target > open_now:
            say(f"opening {target - open_now} orders by {a.fill_path} (now {open_now} open)")
            # keep time for this level's repetitions
            fill_deadline = deadline - min(a.scale_budget * 60 * 0.3, 60 * a.reps * 3)
            more, per_s = await scale.open_orders(b.sender, b.client, b.stack.settings, target - open_now,
                                                  path=a.fill_path, concurrency=a.fill_concurrency,
                                                  deadline=fill_deadline)
            opened += more
            say(f"opened {len(more)} at {per_s:.1f}/s")
        open_now = await count_open(b.client)
        point: dict = {"target": target, "open": open_now, "opened_per_s": per_s,
                       "rss_mib_before": rss_mib(b.worker_pid)}
        evicted, cached = scale.evicted_and_cached(opened, used, cache, a.evicted_samples)
        for name, orders in (("evicted", evicted), ("cached", cached)):
            if orders:
                used.update(o.order_id for o in orders)
                point[name] = (await scale.event_latency(b.sender, b.client, orders)).as_dict()
                say(f"{open_now} open: fulfillment.picked to {len(orders)} {name} orders: p50/p99 "
                    f"{point[name].get('p50_ms', float('nan')):.0f}/{point[name].get('p99_ms', float('nan')):.0f} ms")
        level = await b.pairs(plateau, f"{open_now} open", seed=100)
        level.pop("ids")
        point.update(level)
        point["rss_mib_after"] = rss_mib(b.worker_pid)
        point["vs_none_open"] = Spread([r / base["median"] for r in level["ratio"]["values"]]).as_dict() \
            if base.get("values") and level["ratio"].get("values") else {"values": []}
        points.append(point)
        checkpoint(a, {**results, "scale": out})
        if open_now < target * 0.98 or time.monotonic() > deadline:
            say(f"scale budget reached at {open_now} open")
            break
    if a.py_spy and points:
        profilers = start_profilers(a, {"worker": b.worker_pid}, f"scale{points[-1]['target']}")
        await b.real_rep(plateau, seed=177)
        stop_profilers(profilers)
    return out


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
        out["processes"][wf_type] = process_summary(counts)
    out["lifecycle_actions"] = Spread(lifecycle_totals).as_dict()
    out["cost_per_1000_orders_usd"] = Spread([cost.cost_per_thousand(t) for t in lifecycle_totals]).as_dict()
    return out


def process_summary(counts: list[cost.Count]) -> dict:
    reasons: dict[str, list[int]] = {}
    every = set().union(*(c.actions.keys() for c in counts)) if counts else set()
    for c in counts:
        for reason in every:
            reasons.setdefault(reason, []).append(c.actions.get(reason, 0))
    return {"actions": Spread([c.total for c in counts]).as_dict(),
            "events": Spread([c.events for c in counts]).as_dict(),
            "by_reason_median": {r: statistics.median(v) for r, v in sorted(reasons.items())},
            "activity_types": dict(counts[0].activity_types) if counts else {},
            "sampled": len(counts)}


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
            found[wf_type] = process_summary(counts)
    return found


def reuse(results: dict, earlier: dict, skipped: list[str]) -> None:
    """Fill the skipped phases from an earlier run, each marked with that run's start (`results["reused"]`): a
    phase that no change since touched (the scale phase takes 1 to 2 hours) need not be run again to be shown,
    and is never shown as this run's. A phase the earlier run had itself reused keeps the start of the run that
    measured it."""
    for phase, key in (("latency", "latency"), ("scale", "scale"), ("others", "other_processes")):
        if phase not in skipped:
            continue
        found = earlier.get("cost", {}).get(key) if phase == "others" else earlier.get(key)
        if found is None:
            continue
        if phase == "others":
            results.setdefault("cost", {})[key] = found
        else:
            results[key] = found
        measured = earlier.get("reused", {}).get(phase) or earlier.get("started", "an earlier run")
        results.setdefault("reused", {})[phase] = measured


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    if a.quick and a.out == HERE:  # a smoke run leaves the committed results alone
        a.out = Path(tempfile.gettempdir())
    results = asyncio.run(run(a))
    if a.reuse is not None:
        reuse(results, json.loads(a.reuse.read_text()), a.skip)
    a.out.mkdir(parents=True, exist_ok=True)
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

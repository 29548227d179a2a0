"""The bench harness stays honest without timing assertions (bench/RESULTS.md has the figures): a skeleton lifecycle
shaped like a real order, its settle workflow opened by a forward activity, the bare update-with-start, the action
counting of a known history by Temporal Cloud's rules, the paired ratios, and the report with its computed verdicts.
"""
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.common.v1 import ActivityType, Payload, SearchAttributes, WorkflowType
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import (
    ActivityTaskScheduledEventAttributes,
    ActivityTaskStartedEventAttributes,
    HistoryEvent,
    MarkerRecordedEventAttributes,
    UpsertWorkflowSearchAttributesEventAttributes,
    WorkflowExecutionStartedEventAttributes,
)
from temporalio.client import WorkflowHistory

from bench import ceiling, cost, report, scale, shapes, targets
from bench.__main__ import parse, reuse, shape_of
from bench.common import Spread, at_concurrency, cpu_seconds, paired, percentile
from config.settings import Settings

E = EventType


@pytest.mark.asyncio(loop_scope="session")
async def test_skeleton_lifecycles_and_counting(dev_env) -> None:
    client = dev_env.client
    queue = f"bench-smoke-{uuid.uuid4().hex[:6]}"
    run = uuid.uuid4().hex[:6]
    order_shape, settle_shape = shapes.DEFAULT_ORDER, shapes.DEFAULT_SETTLE
    async with ceiling.build_skeleton_worker(client, Settings(), queue):
        rate = await at_concurrency(3, 3, lambda n: ceiling.skeleton_lifecycle(
            client, run, n, order_shape, settle_shape, task_queue=queue))
        took = await ceiling.bare_place(client, f"bench-bare-{run}", queue)
    assert rate > 0 and took > 0

    # the skeleton's own history has the shape it was given (messages and totals; a signal that arrives while
    # earlier work still runs moves that work to a later segment in the history, so segments are not compared)
    order = await cost.count_workflow(client, f"bench-order-{run}-0")
    settle = await cost.count_workflow(client, f"bench-settle-{run}-0")
    assert shape_of(order).totals() == order_shape.totals()
    assert shape_of(settle).totals() == settle_shape.totals()
    # the order's two forwards reached the settle workflow: it completed, having seen all its four signals
    assert order.activity_types["bench_forward"] == order_shape.forwards == 2

    def work(shape: shapes.Shape) -> int:  # activities, timers, upserts: 1 each; local activities 1 per task
        return sum(s.activities + s.timers + s.upserts for s in shape.segments) + any(
            s.local_activities for s in shape.segments)

    # update-with-start = start + update; every signal 1
    assert order.total == 1 + len(order_shape.messages) + work(order_shape)
    # the signal-with-start that started the settle workflow is one action with its signal
    assert settle.total == 1 + len(settle_shape.messages) - 1 + work(settle_shape)


def _event(event_id: int, kind: int, **attributes: object) -> HistoryEvent:
    return HistoryEvent(event_id=event_id, event_type=kind, event_time=Timestamp(seconds=1_700_000_000 + event_id),
                        **attributes)


def _task(first: int) -> list[HistoryEvent]:
    return [_event(first, E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED), _event(first + 1, E.EVENT_TYPE_WORKFLOW_TASK_STARTED),
            _event(first + 2, E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)]


def _marker(event_id: int) -> HistoryEvent:
    return _event(event_id, E.EVENT_TYPE_MARKER_RECORDED,
                  marker_recorded_event_attributes=MarkerRecordedEventAttributes(marker_name="core_local_activity"))


def _activity(event_id: int, name: str, attempt: int) -> list[HistoryEvent]:
    return [_event(event_id, E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
                   activity_task_scheduled_event_attributes=ActivityTaskScheduledEventAttributes(
                       activity_type=ActivityType(name=name))),
            _event(event_id + 1, E.EVENT_TYPE_ACTIVITY_TASK_STARTED,
                   activity_task_started_event_attributes=ActivityTaskStartedEventAttributes(
                       scheduled_event_id=event_id, attempt=attempt))]


def _upsert(event_id: int, *names: str) -> HistoryEvent:
    return _event(event_id, E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
                  upsert_workflow_search_attributes_event_attributes=UpsertWorkflowSearchAttributesEventAttributes(
                      search_attributes=SearchAttributes(indexed_fields={n: Payload(data=b'"x"') for n in names})))


KNOWN_HISTORY = WorkflowHistory("known", [
    _event(1, E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, workflow_execution_started_event_attributes=(
        WorkflowExecutionStartedEventAttributes(workflow_type=WorkflowType(name="ReserveToFulfill")))),
    _event(2, E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED),  # the signal of the signal-with-start: in the start
    *_task(3),
    _marker(6), _marker(7),  # two local activities in one workflow task: 1 action
    *_activity(8, "post_movement", attempt=3),  # 3 attempts: 3 actions
    _event(10, E.EVENT_TYPE_TIMER_STARTED),
    _upsert(11, "TemporalChangeVersion"),  # the patch marker's upsert alone: free
    _upsert(12, "Stage", "Skus"),  # one command, whatever it sets: 1
    *_task(13),
    _marker(16),  # a local activity in another workflow task: 1 more
    *_activity(17, "forward_event", attempt=1),
    _event(19, E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED),
    _event(20, E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED),
    _event(21, E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED),  # 2
    _event(22, E.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED),
    _event(23, E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED),
])


@pytest.mark.unit
def test_a_known_history_counts_to_known_actions() -> None:
    count = cost.count(KNOWN_HISTORY)
    assert count.actions == {
        "workflow started (start, signal-with-start or update-with-start)": 1,
        "local activities (one per workflow task)": 2, "activity post_movement": 3, "activity forward_event": 1,
        "timer started": 1, "search attributes upserted": 1, "update accepted": 1, "signal received": 1,
        "child workflow (initiated + attempted)": 2, "signal sent from the workflow": 1}
    assert count.total == 14 and count.events == 23
    after_start = count.segments[1]  # what followed the start's signal
    assert (after_start.activities, after_start.forwards, after_start.local_activities, after_start.timers,
            after_start.upserts) == (2, 1, 3, 1, 1)
    assert [s.message for s in count.segments] == [None, "signal", "update", "signal"]
    assert cost.cost_per_thousand(count.total) == pytest.approx(0.70)  # 14 actions x USD 50 per million


@pytest.mark.unit
def test_spread_paired_ratios_and_percentile() -> None:
    s = Spread([3.0, 1.0, 2.0])
    assert (s.min, s.median, s.max) == (1.0, 2.0, 3.0)
    ratios = paired([1.0, 1.8, 0.9], [2.0, 2.0, 1.0])  # each real repetition against the ceiling next to it
    assert ratios.values == [0.5, 0.9, 0.9] and ratios.median == 0.9
    assert percentile([1, 2, 3, 4, 5], 50) == 3
    assert percentile(list(range(101)), 99) == pytest.approx(99)


@pytest.mark.unit
def test_evicted_orders_are_the_oldest_beyond_the_cache() -> None:
    opened = [scale.OpenOrder("web", f"O-{i}", "DC-EAST", 1) for i in range(40)]
    evicted, cached = scale.evicted_and_cached(opened, {"O-0"}, cache_size=10, n=3)
    assert [o.order_id for o in evicted] == ["O-1", "O-2", "O-3"]  # O-0 was used by an earlier sample
    assert [o.order_id for o in cached] == ["O-37", "O-38", "O-39"]
    assert scale.evicted_and_cached(opened[:12], set(), cache_size=10, n=3)[0] == []  # all still cached


@pytest.mark.unit
def test_a_part_is_charged_its_own_children_but_not_a_part_started_under_it() -> None:
    """The bench is every part's parent: its CPU must not include theirs (nor a part's, another part's)."""
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\ntime.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", busy])
    try:
        deadline = time.monotonic() + 20
        while cpu_seconds({"child": child.pid}).get("child", 0) < 0.35 and time.monotonic() < deadline:
            time.sleep(0.05)
        spent = cpu_seconds({"bench": os.getpid(), "child": child.pid})
        alone = cpu_seconds({"bench": os.getpid()})
    finally:
        child.kill()
        child.wait()
    assert spent["child"] >= 0.35
    assert alone["bench"] - spent["bench"] >= 0.3  # counted with the bench only when not a part of its own


@pytest.mark.unit
def test_a_skipped_phase_is_reused_from_an_earlier_run_and_says_so() -> None:
    earlier = {"started": "2026-12-01T04:00:00+00:00", "scale": {"levels": {}}, "latency": {"1": {}},
               "cost": {"other_processes": {"Transfer": {}}}}
    now: dict = {"cost": {"lifecycle_actions": {}}}
    reuse(now, earlier, ["scale", "others"])
    assert now["scale"] == earlier["scale"] and "latency" not in now  # latency was measured, not skipped
    assert now["cost"]["other_processes"] == {"Transfer": {}} and now["cost"]["lifecycle_actions"] == {}
    assert now["reused"] == {"scale": earlier["started"], "others": earlier["started"]}
    rows = "\n".join(report.verdict_rows(now))
    assert "reused from the run of 2026-12-01 04:00" in rows


@pytest.mark.unit
def test_a_phase_reused_twice_keeps_the_start_of_the_run_that_measured_it() -> None:
    measured = {"started": "2026-12-01T04:00:00+00:00", "scale": {"levels": {}}}
    once: dict = {"started": "2026-12-02T16:53:00+00:00"}
    reuse(once, measured, ["scale"])
    twice: dict = {"started": "2026-12-03T11:52:00+00:00"}
    reuse(twice, once, ["scale"])
    assert twice["reused"] == {"scale": measured["started"]}
    assert "reused from the run of 2026-12-01 04:00" in "\n".join(report.verdict_rows(twice))


@pytest.mark.unit
def test_the_quick_run_is_tiny_and_reaches_the_evicted_path() -> None:
    a = parse(["--quick"])
    assert a.lifecycles <= 3 and a.reps == 1 and a.levels.startswith("+")
    assert "max_cached_workflows=10" in a.set and parse([]).lifecycles >= 200


def _spread(*values: float) -> dict:
    return Spread(list(values)).as_dict()


RESULTS = {
    "started": "2026-12-01T00:00:00+00:00", "finished": "2026-12-01T01:00:00+00:00",
    "load_at_start": [0.5, 0.4, 0.3], "load_at_end": [1.5, 1.2, 1.0],
    "machine": {"cpu": "test", "cores": 2, "memory_gib": 8, "os": "Linux", "python": "3.11", "temporalio": "1.35.0",
                "temporal_cli": "temporal 1.9.1"},
    "args": {"quick": "False"}, "settings": {"max_cached_workflows": "2000"},
    "bytecode": {"modules": 10, "fresh": 10, "share": 1.0},
    "skeleton_actions": {"order": 12, "settle": 7},
    "throughput": {"plateau": 16, "plateau_reached": True, "lifecycles_per_rep": 200, "plateau_gain": 0.05,
                   "levels": {n: {"ceiling": _spread(2, 2, 2), "real": _spread(1.7, 1.8, 1.9),
                                  "ratio": _spread(0.84, 0.9, 0.95), "rejected": 0, "worker_rss_mib": 150.0,
                                  "skeleton_rss_mib": 100.0, "load": [1.0, 1.0, 1.0]} for n in ("8", "16", "32")}},
    "latency": {s: {"real": {q: _spread(100, 110, 120) for q in ("p50", "p95", "p99")},
                    "bare": {q: _spread(90, 100, 110) for q in ("p50", "p95", "p99")},
                    "ratio": {"p50": _spread(1.1, 1.1, 1.2), "p99": _spread(1.4, 1.6, 1.7)},
                    "samples_per_rep": 50, "non_decisions": 0} for s in ("1", "10")},
    "cost": {"price": "list price", "processes": {"ReserveToFulfill": {
                 "actions": _spread(12, 12, 12), "events": _spread(40, 40, 41), "by_reason_median": {"timer": 1},
                 "sampled": 3}},
             "other_processes": {"Transfer": {"actions": _spread(14, 14, 14), "events": _spread(30, 30, 30),
                                              "by_reason_median": {}, "sampled": 3}},
             "lifecycle_actions": _spread(19, 19, 19), "cost_per_1000_orders_usd": _spread(0.95, 0.95, 0.95)},
    "scale": {"fill_path": "client", "fill_path_text": "the client path", "inflight": 16, "cache_size": 2000,
              "budget_minutes": 90, "points": [{
                  "target": 20000, "open": 20012, "opened_per_s": 9.5, "rss_mib_before": 700.0,
                  "rss_mib_after": 720.0, "ceiling": _spread(1.9, 2.0, 2.1), "real": _spread(1.6, 1.7, 1.8),
                  "ratio": _spread(0.82, 0.85, 0.88), "vs_none_open": _spread(0.91, 0.94, 0.98),
                  "evicted": {"n": 100, "lost": 0, "p50_ms": 80.0, "p95_ms": 150.0, "p99_ms": 210.0},
                  "cached": {"n": 100, "lost": 0, "p50_ms": 30.0, "p95_ms": 50.0, "p99_ms": 60.0}}]},
}


@pytest.mark.unit
def test_every_target_gets_a_computed_verdict() -> None:
    found = {v.target.key: v for v in targets.verdicts(RESULTS)}
    assert set(found) == set(targets.TARGETS)
    assert found["throughput_ratio"].outcome == targets.MET and found["throughput_ratio"].fragile  # 0.84..0.95
    assert found["latency_10_p99"].outcome == targets.MET
    assert found["lifecycle_actions"].outcome == targets.MET and found["transfer_actions"].outcome == targets.MET
    assert found["return_actions"].outcome == targets.NOT_MEASURED  # no ReturnToRefund in these results
    assert found["scale_open"].outcome == targets.MET and found["scale_rss"].value == 720.0
    worse = {**RESULTS, "cost": {**RESULTS["cost"], "lifecycle_actions": _spread(44, 44, 44)}}
    assert {v.target.key: v.outcome for v in targets.verdicts(worse)}["lifecycle_actions"] == targets.MISSED
    assert {v.target.key: v.outcome for v in targets.verdicts({})}["throughput_ratio"] == targets.NOT_MEASURED


@pytest.mark.unit
def test_the_report_shows_targets_verdicts_and_load_and_keeps_the_analysis(tmp_path: Path) -> None:
    (tmp_path / "RESULTS.md").write_text(f"# results\n\nmethod by hand\n\n{report.START}\nold\n{report.END}\n\n"
                                         "## Analysis\n\nby hand\n")
    report.write(RESULTS, tmp_path)
    text = (tmp_path / "RESULTS.md").read_text()
    assert text.startswith("# results\n\nmethod by hand") and text.endswith("## Analysis\n\nby hand\n")
    assert "old" not in text and "at start 0.50/0.40/0.30, at end 1.50/1.20/1.00" in text
    for target in targets.TARGETS.values():
        assert f"| {target.what}: {target.text} |" in text
    assert "0.84 / **0.90** / 0.95 (at 16 lifecycles in flight) | **met (the spread crosses the target)** |" in text
    assert ("1 sender (paired): <= 1.5x | 1.40 / **1.60** / 1.70 | **missed (the spread crosses the target)** |"
            in text)
    assert "actions per ReturnToRefund: <= 16 | **n/a** | **not measured** |" in text
    assert "| 16 (plateau) |" in text and "80 / 210 | 30 / 60 |" in text
    assert (tmp_path / "scale.png").stat().st_size > 0

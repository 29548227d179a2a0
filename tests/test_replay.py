"""Every committed history (tests/histories/, captured from real runs on the dev server by
`python -m tests.histories.capture`) replays against today's workflow code, with the worker's own workflow list,
sandbox and pydantic data converter. A workflow change that would break a run in flight fails here.

And the gate bites: a copy of ShipToSettle with two steps swapped (capture before revenue) replayed against a
committed ShipToSettle history fails; a copy without the release patch replayed against a release-2 history, and
a copy of release 2's code without its settlement-memo guard against an older one, fail with a nondeterminism
error.
"""
import base64
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner
from temporalio.workflow import NondeterminismError

from devtools.histories import HISTORIES, history_files, replay, replayer, workflow_id_of
from tests.support import upserts_per_task
from worker.registry import WORKFLOWS
from workflows.common import RELEASE_3
from workflows.parts import VIEW_ONCE_PER_TASK, ProcessView
from workflows.process import OPENING_CHECKPOINT
from workflows.release_2.ship_to_settle import SETTLEMENT_MEMO_PATCH

pytestmark = pytest.mark.unit  # no server, no database: runs with the fast tests in CI

FILES = history_files()
WORKFLOW_SOURCE = Path(__file__).resolve().parent.parent / "workflows" / "ship_to_settle.py"
RELEASE_2_SOURCE = WORKFLOW_SOURCE.parent / "release_2" / "ship_to_settle.py"


def _type_of(path: Path) -> str:
    return path.relative_to(HISTORIES).parts[0]


def _events(path: Path) -> list[dict]:
    return json.loads(path.read_text())["events"]


def _history(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(workflow_id_of(path), path.read_text())


def _id(path: Path) -> str:
    return str(path.relative_to(HISTORIES))


@pytest.fixture(scope="module")
def worker_replayer() -> Replayer:
    return replayer()


@pytest.mark.parametrize("path", FILES, ids=[_id(p) for p in FILES])
async def test_history_replays_against_todays_code(path: Path, worker_replayer: Replayer) -> None:
    history = _history(path)
    result = await worker_replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{_id(path)}: {result.replay_failure!r}"


def test_every_workflow_type_has_histories() -> None:
    types = {_type_of(p) for p in FILES}
    for workflow in WORKFLOWS:
        name = workflow.__temporal_workflow_definition.name  # type: ignore[attr-defined]
        assert name in types, f"no committed history of {name}: run `python -m tests.histories.capture`"


def _payload(p: dict) -> object:
    return json.loads(base64.b64decode(p["data"])) if p.get("data") else None


def _story(path: Path) -> dict[str, list]:
    """What a history shows: updates by name, events signalled (type, data), Stage values upserted."""
    story: dict[str, list] = {"updates": [], "events": [], "stages": []}
    for e in _events(path):
        if a := e.get("workflowExecutionUpdateAcceptedEventAttributes"):
            story["updates"].append(a["acceptedRequest"]["input"]["name"])
        if (a := e.get("workflowExecutionSignaledEventAttributes")) and a.get("signalName") == "event":
            for p in a.get("input", {}).get("payloads", []):
                body = _payload(p)
                if isinstance(body, dict) and "type" in body:
                    story["events"].append((body["type"], body.get("data", {})))
        if a := e.get("upsertWorkflowSearchAttributesEventAttributes"):
            stage = a["searchAttributes"]["indexedFields"].get("Stage")
            if stage:
                story["stages"].append(_payload(stage))
    return story


def test_the_histories_include_breaches_cancellations_and_variances() -> None:
    """The stories that matter most for a change in flight are in the set, not only the happy paths."""
    names = "\n".join(str(p.relative_to(HISTORIES)) for p in FILES)
    for kind in ("pick_overdue", "short_pick", "settlement_overdue", "settlement_mismatch", "receipt_variance",
                 "transfer_ship_overdue", "return_not_received"):
        assert f"~{kind}.json" in names, f"no ExceptionCase history of kind {kind}"
    stories = {p: _story(p) for p in FILES}

    def of(workflow_type: str) -> list[dict[str, list]]:
        return [s for p, s in stories.items() if _type_of(p) == workflow_type]

    orders, transfers = of("ReserveToFulfill"), of("Transfer")
    assert any("cancel" in s["updates"] for s in orders), "no order cancelled by ops (update cancel)"
    assert any(t == "order.cancelled" for s in orders for t, _ in s["events"]), "no order.cancelled event"
    assert any("cancel" in s["updates"] for s in transfers), "no transfer cancelled by ops (update cancel)"

    def units(s: dict[str, list], event_type: str) -> int:
        return sum(line["quantity"] for t, data in s["events"] if t == event_type for line in data["lines"])

    assert any(0 < units(s, "transfer.received") < units(s, "transfer.shipped") for s in transfers), \
        "no transfer received short (a receipt variance)"
    assert any("expired" in s["stages"] for s in of("ReturnToRefund")), "no return that expired"
    assert any("refunded" in s["stages"] for s in of("ReturnToRefund")), "no return refunded"
    assert any("resolve" in s["updates"] for s in of("ExceptionCase")), "no case resolved by ops"


def test_the_cli_replays_a_history(tmp_path: Path) -> None:
    """`retailflow replay PATH` replays and says so (exit 0)."""
    from typer.testing import CliRunner

    from devtools.cli import main

    one = next(p for p in FILES if _type_of(p) == "Transfer")
    ok = CliRunner().invoke(main, ["replay", str(one)])
    assert ok.exit_code == 0, ok.output
    assert "1 of 1 replayed cleanly" in ok.output


def _edited(tmp_path: Path, source: Path, old: str, new: str, name: str) -> ModuleType:
    """A copy of a workflow module with `old` replaced by `new`, imported as `name`: the same workflow type,
    other code."""
    text = source.read_text()
    assert old in text, f"{source.name} changed: update the edit in this test"
    path = tmp_path / f"{name}.py"
    path.write_text(text.replace(old, new))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _edited_ship_to_settle(tmp_path: Path, old: str, new: str, name: str) -> type:
    """The ShipToSettle entry (release 3) with one edit."""
    return _edited(tmp_path, WORKFLOW_SOURCE, old, new, name).ShipToSettle


def _reordered_ship_to_settle(tmp_path: Path) -> type:
    """Revenue and capture swapped (release 3: two local activities of one workflow task)."""
    revenue = ("        await call_local(ErpActivities.post_financial, sale,\n"
               "                         summary=f\"revenue {shipment.value} {shipment.currency} for "
               "{shipment.shipment_id}\")\n"
               "        shipment.revenue_key = sale.key\n")
    capture = ("        try:\n"
               "            await call_local(PosActivities.capture_payment, capture,\n"
               "                             summary=f\"capture {shipment.value} {shipment.currency} on "
               "{capture.payment_id}\")\n")
    revenue_after = "".join(f"    {line}\n" for line in revenue.splitlines())  # inside the capture's try
    return _edited_ship_to_settle(tmp_path, revenue + capture, capture + revenue_after, "reordered_ship_to_settle")


def _replayer_of(workflow: type) -> Replayer:
    return Replayer(workflows=[workflow], data_converter=pydantic_data_converter,
                    workflow_runner=UnsandboxedWorkflowRunner())


def _runs_activity(path: Path, name: str) -> bool:
    """The run called activity `name` (on the task queue, or as a local activity: its marker)."""
    for e in _events(path):
        if e.get("activityTaskScheduledEventAttributes", {}).get("activityType", {}).get("name") == name:
            return True
        marker = e.get("markerRecordedEventAttributes", {})
        if marker.get("markerName") == "core_local_activity":
            if _payload(marker["details"]["data"]["payloads"][0]).get("activity_type") == name:
                return True
    return False


def _completed_with_capture(paths: list[Path]) -> list[Path]:
    return [p for p in paths if _runs_activity(p, "capture_payment")
            and any(e["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED" for e in _events(p))]


def _patches(path: Path) -> list[object]:
    return [_payload(e["markerRecordedEventAttributes"]["details"]["patch-data"]["payloads"][0])
            for e in _events(path) if e.get("markerRecordedEventAttributes", {}).get("markerName") == "core_patch"]


SETTLE = HISTORIES / "ShipToSettle"


async def test_the_gate_bites_a_reordered_workflow_fails_to_replay(tmp_path: Path) -> None:
    """Release 3 posts revenue and captures as local activities of one task. Their results replay from the
    task's markers by sequence number, resolved before the SDK matches commands to the history: swapped, the
    capture gets the revenue posting's recorded result and the workflow task fails on it (not a
    NondeterminismError, but a failed replay all the same, which is what the gate checks)."""
    shipped = _completed_with_capture(sorted(SETTLE.glob("*.json")))
    assert shipped, "no committed release-3 ShipToSettle history that captured a payment"
    path = shipped[0]

    # today's code replays it
    assert (await replay([path]))[0].error is None

    reordered = _replayer_of(_reordered_ship_to_settle(tmp_path))
    result = await reordered.replay_workflow(_history(path), raise_on_replay_failure=False)
    assert result.replay_failure is not None
    assert "validation error for CaptureResult" in str(result.replay_failure), result.replay_failure


async def test_the_release_patch_hands_release_2_runs_to_their_own_code(tmp_path: Path) -> None:
    """RELEASES.md, docs/versioning.md: a run started on release 2 has no `release-3` marker, so the entry hands
    it to workflows/release_2/ship_to_settle.py for life; without that, release 3's commands would replay
    against its history and fail. Runs started on release 3 carry the marker."""
    release_2 = _completed_with_capture(sorted((SETTLE / "release-2").glob("*.json")))
    assert release_2, "no completed release-2 ShipToSettle history"
    assert all(o.error is None for o in await replay(release_2))

    always_3 = _replayer_of(_edited_ship_to_settle(
        tmp_path, "self.legacy = None if on_release_3() else release_2.ShipToSettle(input)", "self.legacy = None",
        "always_release_3_ship_to_settle"))
    with pytest.raises(NondeterminismError):
        await always_3.replay_workflow(_history(release_2[0]))

    release_3 = sorted(SETTLE.glob("*.json"))
    assert release_3 and all({"id": RELEASE_3, "deprecated": False} in _patches(p) for p in release_3)
    assert not any({"id": RELEASE_3, "deprecated": False} in _patches(p) for p in release_2)


PRE_PATCH = SETTLE / "pre-settlement-memo"


async def test_the_patch_guard_is_what_keeps_old_runs_replaying(tmp_path: Path) -> None:
    """docs/versioning.md: ShipToSettle's settlement memo came in under `workflow.patched("settlement-memo")`
    (release 2's code, workflows/release_2/ship_to_settle.py). Histories captured before the change replay with
    today's code; without the guard they would not."""
    before = _completed_with_capture(sorted(PRE_PATCH.glob("*.json")))
    assert before, f"no completed pre-change ShipToSettle history in {PRE_PATCH}"
    assert all(o.error is None for o in await replay(before))

    _edited(tmp_path, RELEASE_2_SOURCE, "if workflow.patched(SETTLEMENT_MEMO_PATCH):", "if True:", "unguarded_release_2")
    unguarded = _replayer_of(_edited_ship_to_settle(
        tmp_path, "from workflows.release_2 import ship_to_settle as release_2", "import unguarded_release_2 as release_2",
        "unguarded_ship_to_settle"))
    with pytest.raises(NondeterminismError):
        await unguarded.replay_workflow(_history(before[0]))

    # release-2 runs started after the change carry the patch marker and the memo
    after = _completed_with_capture(sorted((SETTLE / "release-2").glob("*.json")))
    assert after
    for path in after:
        assert {"id": SETTLEMENT_MEMO_PATCH, "deprecated": False} in _patches(path), path.name
        memos = [e for e in _events(path) if e["eventType"] == "EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED"]
        assert len(memos) == 1, path.name


def test_the_inventory_control_histories_cover_parts_decisions_and_credits() -> None:
    """ReceiveToStock, CountToAdjust and VendorReturn (issue 21): histories exported from
    tests/test_inventory_control_e2e.py on the dev server (RETAILFLOW_EXPORT_HISTORIES=1)."""
    stories = {p: _story(p) for p in FILES}

    def of(workflow_type: str) -> list[dict[str, list]]:
        return [s for p, s in stories.items() if _type_of(p) == workflow_type]

    assert any(sum(t == "purchase_order.received" for t, _ in s["events"]) == 2 and "received" in s["stages"]
               for s in of("ReceiveToStock")), "no PO received in two parts"
    counts = of("CountToAdjust")
    assert any("approve" in s["updates"] and "adjusted" in s["stages"] for s in counts), "no count approved"
    assert any("reject" in s["updates"] and "rejected" in s["stages"] for s in counts), "no count rejected"
    assert any("credited" in s["stages"] for s in of("VendorReturn")), "no vendor return credited"
    names = "\n".join(str(p.relative_to(HISTORIES)) for p in FILES)
    for kind in ("over_receipt", "vendor_credit_mismatch"):
        assert f"~{kind}.json" in names, f"no ExceptionCase history of kind {kind}"


def test_only_a_run_that_really_waits_to_open_records_the_opening_patch() -> None:
    """Release 3.1 (docs/versioning.md): `opening-checkpoint` is asked only by a run that waits for its opening
    event. Today's ShipToSettle runs that waited for their order.shipped carry it; the orders placed by
    update-with-start (ready at once) do not; no release-3.0 run has it, so each replays with its one wait."""
    marker = {"id": OPENING_CHECKPOINT, "deprecated": False}
    today = sorted(SETTLE.glob("*.json"))
    assert any(marker in _patches(p) for p in today), "no ShipToSettle run of today's code that waited to open"
    assert all(marker not in _patches(p) for p in sorted((HISTORIES / "ReserveToFulfill").glob("*.json"))
               if _story(p)["updates"][:1] == ["place"])
    assert all(marker not in _patches(p) for p in history_files() if "release-3" in p.parts)


async def test_the_view_patch_keeps_release_3_1_runs_writing_as_they_did(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/versioning.md, release 3.2: a run started on 3.1 has no `view-once-per-task` marker and writes its view
    at every yield, as recorded; the same history replayed with the new write forced on fails. Today's runs carry
    the marker and write at most one upsert per workflow task."""
    old = [p for p in sorted((HISTORIES / "ShipToSettle" / "release-3.1").glob("*.json"))
           if max(upserts_per_task(_history(p).events)) > 1]
    assert old, "no release-3.1 ShipToSettle history with two upserts in one task"
    assert all(o.error is None for o in await replay(old))
    monkeypatch.setattr(ProcessView, "once_per_task", property(lambda self: True))
    failed = await replay(old)
    assert all(o.error is not None and o.error.startswith("NondeterminismError") for o in failed), failed
    monkeypatch.undo()

    today = [p for p in history_files() if p.parent.name in PROCESS_TYPES]
    assert {p.parent.name for p in today} == PROCESS_TYPES
    assert today
    for path in today:
        assert {"id": VIEW_ONCE_PER_TASK, "deprecated": False} in _patches(path), path.name
        assert max(upserts_per_task(_history(path).events)) <= 1, path.name


PROCESS_TYPES = {"ReserveToFulfill", "ShipToSettle", "Transfer", "ReturnToRefund", "ReceiveToStock", "CountToAdjust",
                 "VendorReturn", "LateEvent"}  # the release-3 processes (workflows.process.Process)

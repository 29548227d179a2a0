"""Every committed history (tests/histories/, captured from real runs on the dev server by
`python -m tests.histories.capture`) replays against today's workflow code, with the worker's own workflow list,
sandbox and pydantic data converter. A workflow change that would break a run in flight fails here.

And the gate bites: a copy of ShipToSettle with two steps swapped (capture before revenue) replayed against a
committed ShipToSettle history fails with a nondeterminism error.
"""
import base64
import importlib.util
import json
import sys
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner
from temporalio.workflow import NondeterminismError

from devtools.histories import HISTORIES, history_files, replay, replayer, workflow_id_of
from worker.registry import WORKFLOWS

pytestmark = pytest.mark.unit  # no server, no database: runs with the fast tests in CI

FILES = history_files()
WORKFLOW_SOURCE = Path(__file__).resolve().parent.parent / "workflows" / "ship_to_settle.py"


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


def _edited_ship_to_settle(tmp_path: Path, old: str, new: str, name: str) -> type:
    """A copy of workflows/ship_to_settle.py with `old` replaced by `new`: the same workflow type, other code."""
    source = WORKFLOW_SOURCE.read_text()
    assert old in source, "ship_to_settle.py changed: update the edit in this test"
    path = tmp_path / f"{name}.py"
    path.write_text(source.replace(old, new))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.ShipToSettle


def _reordered_ship_to_settle(tmp_path: Path) -> type:
    """Revenue and capture swapped."""
    revenue = ("            await call(ErpActivities.post_financial, sale,\n"
               "                       summary=f\"revenue {shipment.value} {shipment.currency} for "
               "{shipment.shipment_id}\")\n"
               "            shipment.revenue_key = sale.key\n")
    capture = "            await self._capture(shipment, data)\n"
    return _edited_ship_to_settle(tmp_path, revenue + capture, capture + revenue, "reordered_ship_to_settle")


def _replayer_of(workflow: type) -> Replayer:
    return Replayer(workflows=[workflow], data_converter=pydantic_data_converter,
                    workflow_runner=UnsandboxedWorkflowRunner())


def _completed_with_capture(paths: list[Path]) -> list[Path]:
    return [p for p in paths
            if any(e.get("activityTaskScheduledEventAttributes", {}).get("activityType", {}).get("name")
                   == "capture_payment" for e in _events(p))
            and any(e["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED" for e in _events(p))]


async def test_the_gate_bites_a_reordered_workflow_fails_with_nondeterminism(tmp_path: Path) -> None:
    shipped = [p for p in FILES if _type_of(p) == "ShipToSettle"
               and any(e.get("activityTaskScheduledEventAttributes", {}).get("activityType", {}).get("name")
                       == "capture_payment" for e in _events(p))]
    assert shipped, "no committed ShipToSettle history that captured a payment"
    path = shipped[0]
    history = _history(path)

    # today's code replays it
    assert (await replay([path]))[0].error is None

    reordered = _replayer_of(_reordered_ship_to_settle(tmp_path))
    with pytest.raises(NondeterminismError) as raised:
        await reordered.replay_workflow(history)
    assert "post_financial" in str(raised.value) or "capture_payment" in str(raised.value), raised.value


PRE_PATCH = HISTORIES / "ShipToSettle" / "pre-settlement-memo"


async def test_the_patch_guard_is_what_keeps_old_runs_replaying(tmp_path: Path) -> None:
    """docs/versioning.md: ShipToSettle's settlement memo came in under `workflow.patched("settlement-memo")`.
    Histories captured before the change replay with today's code; without the guard they would not."""
    from workflows.ship_to_settle import SETTLEMENT_MEMO_PATCH

    before = _completed_with_capture(sorted(PRE_PATCH.glob("*.json")))
    assert before, f"no completed pre-change ShipToSettle history in {PRE_PATCH}"
    assert all(o.error is None for o in await replay(before))

    unguarded = _replayer_of(_edited_ship_to_settle(
        tmp_path, "if workflow.patched(SETTLEMENT_MEMO_PATCH):", "if True:", "unguarded_ship_to_settle"))
    with pytest.raises(NondeterminismError):
        await unguarded.replay_workflow(_history(before[0]))

    # runs started after the change carry the patch marker and the memo
    after = _completed_with_capture(sorted((HISTORIES / "ShipToSettle").glob("*.json")))
    assert after
    for path in after:
        events = _events(path)
        patches = [_payload(e["markerRecordedEventAttributes"]["details"]["patch-data"]["payloads"][0])
                   for e in events if e.get("markerRecordedEventAttributes", {}).get("markerName") == "core_patch"]
        assert {"id": SETTLEMENT_MEMO_PATCH, "deprecated": False} in patches, path.name
        memos = [e for e in events if e["eventType"] == "EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED"]
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

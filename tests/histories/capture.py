"""Capture the replay test's histories from real runs: `.venv/bin/python -m tests.histories.capture`.

Starts a dev stack of its own (temp data folder, free ports, short SLAs), drives every story below through the
signed webhooks (the shared traffic driver, `devtools.traffic`) and the ops actions (the `cancel` update, `POST
/exceptions/{id}/resolve`, a reconciliation run), waits until each process reached the end its events call for,
then exports the history of every run in the namespace into `tests/histories/<WorkflowType>/`.

Re-runnable: IDs are fixed (`O-h-0001`, `T-h-0020`, ...) and the random choices seeded, so a new capture
overwrites the same files. Files in sub-folders (e.g. `ShipToSettle/pre-settle-summary/`) are never touched:
they are the pre-change histories of a `workflow.patched` change and must keep replaying (docs/versioning.md).

Stories: orders shipped, split, short-picked, cancelled before and after the pick (by event), cancelled by ops
(update), pickup and POS sale, picked late (pick_overdue breach, resolved by the pick), never settled
(settlement_overdue breach, escalated, still open), settled for less (settlement_mismatch, resolved by ops);
transfers plain, split, short (receipt_variance) and in two trucks (release 2), one never shipped (transfer_ship_overdue) then cancelled
by ops; an order with its return refunded; a return never received (return_not_received: expired); a
reconciliation run; release 2's late events: a parcel dispatched after the order was cancelled, a return parcel
after the return expired.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from client.names import SLA_BREACHED
from client.schedules import SCHEDULE_ID, reconciliation_input
from config.settings import Settings
from devtools.catalog import DISTRIBUTION_CENTERS, STORES
from devtools.embedded_postgres import free_port
from devtools.histories import HISTORIES, export
from devtools.stack import DevStack
from devtools.traffic import Day, Expectation, Sender, order, order_and_return, transfer, verify
from domain import ids
from domain.order import CancelRequest
from domain.sla import SlaKind
from domain.transfer import CancelRequest as TransferCancelRequest

RUN = "h"  # the ID part of every business key: O-h-0001 ...
# Short enough to breach within the run where a story means to, long enough that the others (whose events follow at
# once) do not breach on a busy machine.
SLA = {
    SlaKind.PICK_OVERDUE: timedelta(seconds=20),
    SlaKind.SETTLEMENT_OVERDUE: timedelta(seconds=25),
    SlaKind.TRANSFER_SHIP_OVERDUE: timedelta(seconds=15),
    SlaKind.RETURN_NOT_RECEIVED: timedelta(seconds=20),
}
LATE_BY = timedelta(seconds=30)
ESCALATE_EVERY = timedelta(seconds=15)
RECEIPT_GRACE = timedelta(seconds=10)  # a short transfer receipt becomes final (receipt_variance case) after this
ORDER_VARIANTS = ["ship", "split", "short_pick", "cancel_before_pick", "cancel_after_pick", "pickup", "pos_sale",
                  "late_pick", "unsettled", "mismatch"]
TRANSFER_VARIANTS = ["plain", "split", "short", "trucks"]


def say(message: str) -> None:
    print(f"[capture {time.strftime('%H:%M:%S')}] {message}", flush=True)


def capture_settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, database_url=None, temporal_address=f"127.0.0.1:{free_port()}",
                    temporal_ui_port=free_port(), http_port=free_port(), log_format="json", faults={},
                    sla=SLA, exception_escalate_every=ESCALATE_EVERY, transfer_receipt_grace=RECEIPT_GRACE,
                    webhook_secrets={}, api_tokens=[],
                    max_concurrent_activities=50, max_concurrent_workflow_tasks=20)


def day(sender: Sender, n: int) -> Day:
    return Day(sender, random.Random(1000 + n), RUN, late_by=LATE_BY)


async def ops_cancelled_order(client, sender: Sender, n: int) -> list[Expectation]:  # noqa: ANN001
    """An order placed, then cancelled by ops through the `cancel` update (as from the UI)."""
    d = day(sender, n)
    order_id = d.id("O", n)
    item = d.items(1)[0]
    await sender.send("web", "order.placed", {
        "order_id": order_id, "channel": "web", "currency": "USD",
        "lines": [{"line_id": "1", "sku": item.sku, "quantity": 1, "uom": "EA", "unit_price": str(item.price)}],
        "fulfillment": {"mode": "ship", "location_id": DISTRIBUTION_CENTERS[0]},
        "payment": {"payment_id": f"pay-{order_id}", "authorized_amount": str(item.price)}})
    workflow_id = ids.order_workflow_id("web", order_id)
    await sender.read(f"/orders/web/{order_id}", until=lambda s: s.get("decision") is not None)
    await client.get_workflow_handle(workflow_id).execute_update(
        "cancel", CancelRequest(reason="customer called: wrong address", requested_by="ops@capture"))
    return [Expectation(workflow_id, frozenset({"cancelled"}), scenario="ops_cancel")]


async def unshipped_transfer_cancelled_by_ops(client, sender: Sender, n: int) -> list[Expectation]:  # noqa: ANN001
    """A transfer requested and never shipped: transfer_ship_overdue breaches, then ops cancel it."""
    d = day(sender, n)
    transfer_id = d.id("T", n)
    item = d.items(1)[0]
    await sender.send("wms", "transfer.requested", {
        "transfer_id": transfer_id, "from_location_id": DISTRIBUTION_CENTERS[0], "to_location_id": STORES[0],
        "lines": [{"sku": item.sku, "quantity": 2, "uom": "EA"}]})
    workflow_id = ids.transfer_workflow_id(transfer_id)
    await _until_breached(client, workflow_id)
    await client.get_workflow_handle(workflow_id).execute_update(
        "cancel", TransferCancelRequest(reason="truck cancelled", requested_by="ops@capture"))
    return [Expectation(workflow_id, frozenset({"cancelled"}), scenario="transfer_ops_cancel")]


async def return_never_received(sender: Sender, n: int) -> list[Expectation]:
    """An order shipped, a return authorized for it and never received: return_not_received, the return expires."""
    d = day(sender, n)
    expected = await order(d, n, "ship")
    _, channel, order_id = expected[0].workflow_id.split(":", 2)
    state = await sender.read(f"/orders/{channel}/{order_id}", until=lambda s: s.get("stage") == "fulfilled")
    line = next(ln for ln in state["lines"] if ln.get("shipped"))
    return_id = d.id("R", n)
    await sender.send(channel, "return.authorized", {
        "return_id": return_id, "order_id": order_id, "channel": channel, "return_location_id": STORES[0],
        "lines": [{"line_id": line["line_id"], "sku": line["sku"], "quantity": 1, "reason": "too small"}]})
    return [*expected, Expectation(ids.return_workflow_id(return_id), frozenset({"expired"}),
                                   scenario="return_not_received")]


async def dispatched_after_cancel(sender: Sender, n: int) -> list[Expectation]:
    """An order picked and cancelled (the WMS intercepted), then the WMS reports the parcel left anyway: a
    LateEvent process takes the units out of the ledger and opens `shipped_after_cancel` (release 2)."""
    d = day(sender, n)
    expected = await order(d, n, "cancel_after_pick")
    _, channel, order_id = expected[0].workflow_id.split(":", 2)
    state = await sender.read(f"/orders/{channel}/{order_id}", until=lambda s: s.get("stage") == "cancelled")
    line = state["lines"][0]
    webhook_id = f"msg_late_{RUN}_{n}"
    await sender.send("wms", "shipment.dispatched", {
        "shipment_id": f"S-{RUN}-{n}-late", "order_id": order_id, "channel": channel,
        "location_id": line["location_id"], "carrier": "ups", "tracking_number": f"1Z{RUN}{n}",
        "lines": [{"line_id": line["line_id"], "quantity": line["released"]}]}, webhook_id=webhook_id)
    late = ids.late_event_workflow_id(ids.webhook_event_id("wms", webhook_id))
    return [*expected, Expectation(late, frozenset({"apply"}), scenario="dispatched_after_cancel")]


async def parcel_after_expiry(sender: Sender, n: int) -> list[Expectation]:
    """A return that expired, then its parcel arrives: a LateEvent process takes it into pending_inspection and
    opens `late_event` (release 2)."""
    expected = await return_never_received(sender, n)
    return_id = expected[-1].workflow_id.split(":", 1)[1]
    state = await sender.read(f"/returns/{return_id}", until=lambda s: s.get("stage") == "expired", within=120)
    webhook_id = f"msg_late_{RUN}_{n}"
    await sender.send("wms", "return.received", {
        "return_id": return_id, "location_id": STORES[0],
        "lines": [{"sku": state["lines"][0]["sku"], "quantity": 1}]}, webhook_id=webhook_id)
    late = ids.late_event_workflow_id(ids.webhook_event_id("wms", webhook_id))
    return [*expected, Expectation(late, frozenset({"apply"}), scenario="parcel_after_expiry")]


async def _until_breached(client, workflow_id: str, within: float = 120.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        description = await client.get_workflow_handle(workflow_id).describe()
        if description.typed_search_attributes.get(SLA_BREACHED):
            return
        await asyncio.sleep(1.0)
    raise TimeoutError(f"{workflow_id} did not breach its SLA within {within}s")


async def resolve_open_mismatch_cases(sender: Sender) -> list[str]:
    """Ops resolves every open settlement_mismatch case through the read API (POST /exceptions/{id}/resolve)."""
    headers = {"authorization": f"Bearer {sender.api_token}"}
    deadline = time.monotonic() + 60
    while True:
        cases = (await sender.http.get("/exceptions", params={"status": "open"}, headers=headers)).json()
        cases = cases.get("cases", cases) if isinstance(cases, dict) else cases
        mismatches = [c for c in cases if c.get("kind") == "settlement_mismatch"]
        if mismatches or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    resolved = []
    for case in mismatches:
        for _ in range(20):  # 503 (Temporal busy) says: retry
            answer = await sender.http.post(f"/exceptions/{case['exception_id']}/resolve", headers=headers, json={
                "note": "customer paid the difference by bank transfer", "resolved_by": "ops@capture"})
            if answer.status_code != 503:
                break
            await asyncio.sleep(float(answer.headers.get("retry-after", 2)))
        answer.raise_for_status()
        resolved.append(case["exception_id"])
    return resolved


async def drive(stack) -> list[Expectation]:  # noqa: ANN001
    client = await stack.client()
    sender = Sender(stack.api_url, dict(stack.settings.webhook_secrets), api_token=stack.api_token, max_wait=120)
    try:
        stories = [order(day(sender, n), n, variant) for n, variant in enumerate(ORDER_VARIANTS, start=1)]
        stories += [transfer(day(sender, n), n, variant) for n, variant in enumerate(TRANSFER_VARIANTS, start=20)]
        stories += [order_and_return(day(sender, 30), 30), return_never_received(sender, 31),
                    ops_cancelled_order(client, sender, 40), unshipped_transfer_cancelled_by_ops(client, sender, 41),
                    dispatched_after_cancel(sender, 50), parcel_after_expiry(sender, 51)]
        expectations = []
        for outcome in await asyncio.gather(*stories, return_exceptions=True):
            if isinstance(outcome, BaseException):
                say(f"A STORY FAILED: {outcome!r}")
                continue
            expectations += outcome
        say(f"{len(expectations)} processes sent; waiting for them to end")
        say(f"resolved by ops: {await resolve_open_mismatch_cases(sender)}")
        verdicts = await verify(client, expectations, within=90)
        for v in verdicts:
            if not v.ok:
                say(f"NOT AS EXPECTED: {v.expectation.workflow_id} ({v.expectation.scenario}) is {v.status}/{v.stage}")
        await client.execute_workflow("Reconciliation", reconciliation_input(stack.settings),
                                      id=f"{SCHEDULE_ID}-capture", task_queue=stack.settings.task_queue,
                                      execution_timeout=timedelta(minutes=5))
        await asyncio.sleep(ESCALATE_EVERY.total_seconds() + 3)  # an open case escalates once
        return expectations
    finally:
        await sender.close()


async def export_all(client, dest: Path) -> list[Path]:  # noqa: ANN001
    """Every run in the namespace but the schedule's own reconciliation runs (their IDs carry a timestamp)."""
    workflow_ids = sorted({w.id async for w in client.list_workflows()
                           if not (w.workflow_type == "Reconciliation" and not w.id.endswith("-capture"))})
    _clear(dest)
    return await export(client, workflow_ids, dest)


# Exported by tests/test_inventory_control_e2e.py (RETAILFLOW_EXPORT_HISTORIES=1), not by this capture: kept.
EXPORTED_BY_E2E = ("po~", "count~", "rtv~", "late~webhook~wms~msg_po_late_", "exception~po~", "exception~count~",
                   "exception~rtv~", "exception~late~webhook~wms~msg_po_late_")


def _clear(dest: Path) -> None:
    """Remove the previous capture's files; files in sub-folders (pre-change histories) are kept, and so are the
    inventory-control histories the e2e test exports."""
    for folder in dest.iterdir() if dest.exists() else []:
        if folder.is_dir():
            for old in folder.glob("*.json"):
                if not old.name.startswith(EXPORTED_BY_E2E):
                    old.unlink()


async def capture(dest: Path = HISTORIES, *, keep: bool = False) -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="retailflow-capture-"))
    stack = DevStack(capture_settings(data_dir), postgres_port=free_port(), start_timeout=180.0, say=say)
    await stack.start()
    say(f"stack up: UI {stack.ui_url}, API {stack.api_url}")
    try:
        expectations = await drive(stack)
        client = await stack.client()
        written = await export_all(client, dest)
        say(f"exported {len(written)} histories into {dest}")
        for path in written:
            print("  ", path.relative_to(dest))
        failed = [e.workflow_id for e in expectations
                  if not any(p.name.startswith(e.workflow_id.replace(':', '~')) for p in written)]
        return 1 if failed else 0
    finally:
        if keep:
            say(f"--keep: the stack stays up (UI {stack.ui_url}); Ctrl-C stops it")
            try:
                await asyncio.Event().wait()
            finally:
                await stack.stop()
        else:
            await stack.stop()
            shutil.rmtree(data_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=HISTORIES)
    parser.add_argument("--keep", action="store_true", help="keep the stack up afterwards (for screenshots)")
    args = parser.parse_args(argv)
    return asyncio.run(capture(args.dest, keep=args.keep))


if __name__ == "__main__":
    sys.exit(main())

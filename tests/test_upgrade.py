"""The upgrade test: processes started on the newest release's worker (RELEASES.md) finish on today's code.

The release (phase 1): from a tree of the release commit (tests/release.py), its own `retailflow seed` (schema at
the release's head, master data, opening stock), `retailflow worker` and `retailflow api`, against the session's
Temporal dev server and a database of this test. Through that door, the four process types are left waiting
mid-flight: an order placed and picked (ReserveToFulfill awaiting dispatch), an order shipped and delivered
(ShipToSettle awaiting settlement), a transfer requested and shipped (in transit), a return of a settled order
authorized and received (awaiting inspection).

The deploy (phase 2): the release's door and worker stopped with SIGTERM, the schema migrated by today's code,
today's worker and door started (in-process, as the other dev-server tests build them). The remaining events go
through today's door, and every process ends as its events say: completed in its final stage, workflow tasks of
both workers in its history and no failed one (a NondeterminismError shows as a failed workflow task), nothing
left in a held bucket, and the ledger and journal pass the invariant checker.

While the workflows' commands are those of the release the test passes trivially; it bites once they change
without `workflow.patched` (docs/versioning.md).
"""
import asyncio
import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from temporalio.api.enums.v1 import EventType, TaskQueueType, WorkflowTaskFailedCause
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities.checker import check
from client.correlation import CorrelationInterceptor
from devtools.embedded_postgres import free_port
from domain import ids
from domain.reconciliation import SCHEDULE_ID
from persistence.engine import create_engine
from persistence.migrations import current, upgrade
from starters.api import create_app
from starters.signatures import sign_headers
from tests.release import (
    ROOT,
    Release,
    ReleaseCommand,
    ReleaseUnavailable,
    extract,
    module_origins,
    newest_release,
    release_env,
)
from tests.support import create_database, unique
from tests.support import test_settings as make_settings
from worker.factory import build_worker

SOURCES = ("web", "marketplace", "pos", "wms", "carrier", "payments")
SECRET = "whsec_" + base64.b64encode(b"retailflow-upgrade-test").decode()
TOKEN = "upgrade-test-token"  # release 2.0 refuses an API token shorter than 16 characters
WAIT = 90.0  # seconds for a process to reach a stage, on a shared CI machine
NEW_WORKER = "upgrade-test-todays-worker"  # identity of today's worker in the histories
RELEASE_MODULES = ["workflows.reserve_to_fulfill", "workflows.ship_to_settle", "workflows.transfer",
                   "workflows.return_to_refund", "worker.main", "starters.api"]
HELD = ("reserved", "picked", "in_transit", "pending_inspection")


class Door:
    """One HTTP door (the release's `retailflow api`, or today's app in-process) with its tree's examples."""

    def __init__(self, name: str, http: httpx.AsyncClient, examples: Path, client: Client) -> None:
        self.name, self.http, self.examples, self.client = name, http, examples, client

    def body(self, type_: str, **data: object) -> dict[str, Any]:
        b = json.loads((self.examples / f"{type_.replace('.', '_')}.json").read_text())
        b["data"].update(data)
        return b

    async def send(self, source: str, type_: str, *, expect: int = 202, **data: object) -> dict[str, Any]:
        raw = json.dumps(self.body(type_, **data)).encode()
        headers = {"content-type": "application/json", **sign_headers(SECRET, f"msg_{uuid.uuid4().hex}", raw)}
        answer = await self.http.post(f"/webhooks/{source}", content=raw, headers=headers)
        assert answer.status_code == expect, f"{self.name} door, {type_} {data}: {answer.status_code} {answer.text}"
        return answer.json()

    async def stage(self, path: str, workflow_id: str, *stages: str, within: float = WAIT) -> dict[str, Any]:
        """The read API's state once its stage is one of `stages`; else fail with what was seen and the run's
        failed workflow tasks (a nondeterminism error keeps a run from ever getting there)."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        seen, failures, polls = "nothing", [], 0
        while loop.time() < began + within and not failures:
            answer = await self.http.get(path, headers={"authorization": f"Bearer {TOKEN}"})
            if answer.status_code == 200 and answer.json().get("stage") in stages:
                return answer.json()
            seen = f"{answer.status_code} {answer.text[:300]}"
            polls += 1
            if polls % 10 == 0:  # a failed workflow task never heals by itself: fail now, not at the deadline
                _, failures = await history_facts(self.client, workflow_id)
            await asyncio.sleep(0.3)
        if not failures:
            _, failures = await history_facts(self.client, workflow_id)
        raise AssertionError(f"{self.name} door: {workflow_id} not in {stages} after {loop.time() - began:.0f} s; "
                             f"last answer {seen}; failed workflow tasks: {failures or 'none'}")


async def history_facts(client: Client, workflow_id: str) -> tuple[set[str], list[str]]:
    """The identities of the workers that completed the run's workflow tasks, and its failed workflow tasks."""
    identities: set[str] = set()
    failures: list[str] = []
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            identities.add(event.workflow_task_completed_event_attributes.identity)
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            failed = event.workflow_task_failed_event_attributes
            failures.append(f"event {event.event_id} {WorkflowTaskFailedCause.Name(failed.cause)}: "
                            f"{failed.failure.message[:500]}")
    return identities, failures


async def together(*stories: Coroutine[Any, Any, Any]) -> list[Any]:
    """Run the stories concurrently; the first to fail cancels the others and is raised as itself."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(story) for story in stories]
    except ExceptionGroup as failed:
        raise failed.exceptions[0] if len(failed.exceptions) == 1 else failed from None
    return [task.result() for task in tasks]


# ---- the stories, in two halves: what happens on the release, what happens after the deploy -----------------
class Keys:
    """The business keys of one run of the test, and which code each process runs on."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8].upper()
        self.waiting_dispatch, self.waiting_settlement, self.returned = f"UA-{tag}", f"UB-{tag}", f"UC-{tag}"
        self.transfer, self.ret = f"UT-{tag}", f"UR-{tag}"
        order, settle = ids.order_workflow_id, ids.settle_workflow_id
        self.in_flight = [order("web", self.waiting_dispatch), settle("web", self.waiting_settlement),
                          ids.transfer_workflow_id(self.transfer), ids.return_workflow_id(self.ret)]
        self.closed_on_release = [order("web", self.waiting_settlement), order("web", self.returned),
                                  settle("web", self.returned)]
        self.started_today = [settle("web", self.waiting_dispatch)]


def order_path(order: str) -> str:
    return f"/orders/web/{order}"


async def place_and_pick(door: Door, order: str) -> dict[str, Any]:
    payment = door.body("order.placed")["data"]["payment"]
    decision = await door.send("web", "order.placed", expect=200, order_id=order,
                               payment={**payment, "payment_id": f"pay-{order}"})
    assert decision["decision"] == "reserved", decision
    await door.send("wms", "fulfillment.picked", order_id=order, location_id=decision["lines"][0]["location_id"],
                    lines=[{"line_id": ln["line_id"], "quantity": ln["reserved_quantity"]}
                           for ln in decision["lines"]])
    await door.stage(order_path(order), ids.order_workflow_id("web", order), "awaiting_dispatch")
    return decision


async def dispatch_and_deliver(door: Door, order: str, decision: dict[str, Any]) -> None:
    await door.send("wms", "shipment.dispatched", order_id=order, shipment_id=f"SH-{order}",
                    location_id=decision["lines"][0]["location_id"],
                    lines=[{"line_id": ln["line_id"], "quantity": ln["reserved_quantity"]}
                           for ln in decision["lines"]])
    await door.stage(order_path(order), ids.order_workflow_id("web", order), "fulfilled")
    await door.send("carrier", "shipment.delivered", order_id=order, shipment_id=f"SH-{order}")
    await door.stage(f"{order_path(order)}/settlement", ids.settle_workflow_id("web", order), "awaiting_settlement")


async def settle(door: Door, order: str) -> None:
    await door.send("payments", "payment.settled", order_id=order, payment_id=f"pay-{order}")
    await door.stage(f"{order_path(order)}/settlement", ids.settle_workflow_id("web", order), "settled")


async def on_the_release(door: Door, k: Keys) -> dict[str, Any]:
    """Leave each process type waiting mid-flight; returns the order decisions."""
    async def waiting_dispatch() -> dict[str, Any]:
        return await place_and_pick(door, k.waiting_dispatch)

    async def waiting_settlement() -> dict[str, Any]:
        decision = await place_and_pick(door, k.waiting_settlement)
        await dispatch_and_deliver(door, k.waiting_settlement, decision)
        return decision

    async def waiting_inspection() -> dict[str, Any]:
        decision = await place_and_pick(door, k.returned)
        await dispatch_and_deliver(door, k.returned, decision)
        await settle(door, k.returned)
        await door.send("web", "return.authorized", return_id=k.ret, order_id=k.returned)
        await door.send("wms", "return.received", return_id=k.ret)
        await door.stage(f"/returns/{k.ret}", ids.return_workflow_id(k.ret), "awaiting_inspection")
        return decision

    async def in_transit() -> None:
        await door.send("wms", "transfer.requested", transfer_id=k.transfer)
        await door.send("wms", "transfer.shipped", transfer_id=k.transfer)
        await door.stage(f"/transfers/{k.transfer}", ids.transfer_workflow_id(k.transfer), "in_transit")

    a, b, c, _ = await together(waiting_dispatch(), waiting_settlement(), waiting_inspection(), in_transit())
    await together(*(until_closed(door.client, wf) for wf in k.closed_on_release),
                   *(until_idle(door.client, wf) for wf in k.in_flight))
    return {k.waiting_dispatch: a, k.waiting_settlement: b, k.returned: c}


async def until_closed(client: Client, workflow_id: str, within: float = WAIT) -> None:
    """The run has completed (its stage shows before its last commands are done)."""
    try:
        await asyncio.wait_for(client.get_workflow_handle(workflow_id).result(), within)
    except TimeoutError:
        raise AssertionError(f"{workflow_id} did not complete within {within:.0f} s") from None


async def until_idle(client: Client, workflow_id: str, within: float = WAIT) -> None:
    """The run waits for its next event: no activity, child or workflow task pending, so the deploy always
    lands at the same point of its history."""
    handle = client.get_workflow_handle(workflow_id)
    loop = asyncio.get_running_loop()
    began = loop.time()
    while True:
        raw = (await handle.describe()).raw_description
        busy = [*(a.activity_type.name for a in raw.pending_activities),
                *(c.workflow_type_name for c in raw.pending_children),
                *(["workflow task"] if raw.HasField("pending_workflow_task") else [])]
        if not busy:
            return
        assert loop.time() - began < within, f"{workflow_id} still busy after {within:.0f} s: {busy}"
        await asyncio.sleep(0.3)


async def after_the_deploy(door: Door, k: Keys, decisions: dict[str, Any]) -> None:
    """The remaining events, each process to its end."""
    async def dispatch_deliver_settle() -> None:
        await dispatch_and_deliver(door, k.waiting_dispatch, decisions[k.waiting_dispatch])
        await settle(door, k.waiting_dispatch)

    async def inspect_and_refund() -> None:
        await door.send("wms", "return.inspected", return_id=k.ret)
        await door.send("payments", "refund.settled", return_id=k.ret, refund_id=f"RF-{k.ret}")
        await door.stage(f"/returns/{k.ret}", ids.return_workflow_id(k.ret), "refunded")

    async def receive() -> None:
        await door.send("wms", "transfer.received", transfer_id=k.transfer)
        await door.stage(f"/transfers/{k.transfer}", ids.transfer_workflow_id(k.transfer), "received")

    async def read_closed() -> None:  # a query on a closed run replays its whole history on today's code
        await door.stage(order_path(k.waiting_settlement), ids.order_workflow_id("web", k.waiting_settlement),
                         "fulfilled")
        await door.stage(order_path(k.returned), ids.order_workflow_id("web", k.returned), "fulfilled")
        await door.stage(f"{order_path(k.returned)}/settlement", ids.settle_workflow_id("web", k.returned),
                         "settled")

    await together(dispatch_deliver_settle(), settle(door, k.waiting_settlement), inspect_and_refund(), receive(),
                   read_closed())


# ---- the tests --------------------------------------------------------------------------------------------------
def test_the_newest_release_is_the_first_row(tmp_path):
    release = newest_release()
    assert len(release.commit) == 40 and release.name
    table = "| release | commit | date (UTC) | what it holds |\n|---|---|---|---|\n"
    (tmp_path / "R.md").write_text(table + f"| 2.0 | {'b' * 40} | 2027-01-05 | next |\n| 1.0 | {'a' * 40} | x | y |\n")
    assert newest_release(tmp_path / "R.md") == Release("2.0", "b" * 40)
    (tmp_path / "R.md").write_text(table + "| 2.0 | d4546427 | 2027-01-05 | a short sha |\n")
    with pytest.raises(ValueError, match="not a full 40-hex commit"):
        newest_release(tmp_path / "R.md")


def test_a_shallow_clone_without_the_release_skips_with_the_reason(tmp_path):
    release = newest_release()
    clone = tmp_path / "shallow"
    done = subprocess.run(["git", "clone", "--quiet", "--depth", "1", ROOT.as_uri(), str(clone)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    if subprocess.run(["git", "-C", str(clone), "cat-file", "-e", f"{release.commit}^{{commit}}"]).returncode == 0:
        pytest.skip("HEAD is the release commit itself: a depth-1 clone holds it")
    with pytest.raises(ReleaseUnavailable, match="shallow clone"):
        extract(release, tmp_path / "tree", repo=clone)
    assert not (tmp_path / "tree").exists()


@pytest.mark.stack
@pytest.mark.timeout(480)
async def test_processes_started_on_the_last_release_finish_on_todays_code(dev_env, postgres_server_url, tmp_path):
    release = newest_release()
    work = Path(tempfile.mkdtemp(prefix=f"retailflow-release-{release.name}-"))  # the tree and its bytecode
    tree = work / "tree"
    try:
        extract(release, tree)
    except ReleaseUnavailable as why:
        shutil.rmtree(work, ignore_errors=True)
        pytest.skip(str(why))

    client = Client(**{**dev_env.client.config(), "interceptors": [CorrelationInterceptor()]})
    database_url = await create_database(postgres_server_url)
    task_queue = unique("tq-upgrade")
    port = free_port()
    env = release_env(tree, work / "pycache", temporal_address=client.service_client.config.target_host,
                      temporal_namespace=client.namespace, database_url=database_url, task_queue=task_queue,
                      webhook_secrets=json.dumps(dict.fromkeys(SOURCES, SECRET)), api_tokens=json.dumps([TOKEN]),
                      http_port=str(port), order_decision_timeout="PT60S", reconciliation_every="P1D",
                      log_format="json", log_level="INFO")
    commands = {name: ReleaseCommand(tree, [name], env, tmp_path / f"release-{name}.log")
                for name in ("seed", "worker", "api")}
    schedule_was_there = await _schedule_exists(client)
    k = Keys()
    timings: dict[str, float] = {}
    started = time.monotonic()
    try:
        origins = await asyncio.to_thread(module_origins, tree, env, RELEASE_MODULES)
        print(f"release {release.name} {release.commit} in {tree}:\n  "
              + "\n  ".join(f"{m}: {f}" for m, f in origins.items()))

        # ---- phase 1: the release ------------------------------------------------------------------------------
        # all three at once: seed and worker both migrate, serialised by the migration's advisory lock
        seeding = asyncio.create_task(asyncio.to_thread(commands["seed"].run))
        worker, api = commands["worker"].start(), commands["api"].start()
        assert await seeding == 0, commands["seed"].tail()
        release_revision = await current(database_url)
        await _until_polling(client, task_queue, worker)
        examples = tree / "examples"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=90) as http:
            await _until_up(http, api)
            timings["release up"] = time.monotonic() - started
            decisions = await on_the_release(Door(f"release {release.name}", http, examples, client), k)
        timings["phase 1"] = time.monotonic() - started

        # ---- the deploy ----------------------------------------------------------------------------------------
        old_worker = f"{worker.pid}@{socket.gethostname()}"
        for name in ("api", "worker"):
            code = await asyncio.to_thread(commands[name].stop)
            assert code == 0, f"the release's {name} did not stop cleanly on SIGTERM ({code})\n" + commands[name].tail()
        timings["release stopped"] = time.monotonic() - started
        await upgrade(database_url)
        print(f"schema {release_revision} (release) -> {await current(database_url)} (today)")

        # ---- phase 2: today's code ----------------------------------------------------------------------------
        settings = make_settings(database_url=database_url, task_queue=task_queue,
                                 webhook_secrets=dict.fromkeys(SOURCES, SECRET), api_tokens=[TOKEN])
        engine = create_engine(database_url, pool_size=10, max_overflow=30)
        try:
            async with build_worker(client, engine, settings, identity=NEW_WORKER):
                app = create_app(settings, engine=engine, client=client)
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rf",
                                             timeout=90) as http:
                    await after_the_deploy(Door("today's", http, ROOT / "examples", client), k, decisions)
                timings["phase 2"] = time.monotonic() - started
                await _every_process_ended_as_its_events_say(client, engine, k, task_queue, old_worker)
        finally:
            await engine.dispose()
        report = await check(database_url)
        assert report.ok, [c.model_dump() for c in report.failed()]
        timings["total"] = time.monotonic() - started
        print("timings (s from the release's start): " + ", ".join(f"{n} {t:.1f}" for n, t in timings.items()))
    except BaseException:
        for command in commands.values():
            print(command.tail())
        raise
    finally:
        for command in commands.values():
            command.kill()
        if not schedule_was_there:  # the release's worker created it on the shared server: leave none behind
            try:
                await client.get_schedule_handle(SCHEDULE_ID).delete()
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
        shutil.rmtree(work, ignore_errors=True)


async def _every_process_ended_as_its_events_say(client: Client, engine, k: Keys, task_queue: str,  # noqa: ANN001
                                                 old_worker: str) -> None:
    orders = (k.waiting_dispatch, k.waiting_settlement, k.returned)
    # workflow ID -> the workers that ran it: the release's only, today's only, or both (in flight at the deploy)
    ran_on = {**{wf: {old_worker, NEW_WORKER} for wf in k.in_flight},
              **{wf: {old_worker} for wf in k.closed_on_release},
              **{wf: {NEW_WORKER} for wf in k.started_today}}
    problems: list[str] = []
    for workflow_id, workers in ran_on.items():
        handle = client.get_workflow_handle(workflow_id)
        try:
            await asyncio.wait_for(handle.result(), WAIT)
        except Exception as err:  # noqa: BLE001 - reported with the history facts below
            problems.append(f"{workflow_id}: no result: {err!r}")
        status = (await handle.describe()).status
        identities, failures = await history_facts(client, workflow_id)
        if status != WorkflowExecutionStatus.COMPLETED:
            problems.append(f"{workflow_id}: {status.name if status else None}, not COMPLETED")
        if failures:
            problems.append(f"{workflow_id}: failed workflow tasks {failures}")
        if identities != workers:
            problems.append(f"{workflow_id}: workflow tasks completed by {sorted(identities)}, expected "
                            f"{sorted(workers)}")
    assert not problems, "\n".join(problems)

    # nothing else ran on the queue (no exception case opened, no stray process), bar a scheduled reconciliation
    listed: set[str] = set()
    for _ in range(50):  # visibility is eventually consistent
        listed = {w.id async for w in client.list_workflows(f'TaskQueue = "{task_queue}" AND '
                                                             'WorkflowType != "Reconciliation"')}
        if set(ran_on) <= listed:
            break
        await asyncio.sleep(0.2)
    assert listed == set(ran_on), f"on the queue besides the eight: {sorted(listed - set(ran_on))}; " \
                                  f"missing: {sorted(set(ran_on) - listed)}"

    # the ledger: each closed process holds nothing; orders took their units out of the network, the transfer
    # moved its units and kept the network whole, the return put its unit back on the shelf at the return store
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT workflow_id, location_id, bucket, sum(delta) FROM movements WHERE workflow_id = ANY(:ids) "
            "GROUP BY 1, 2, 3"), {"ids": list(ran_on)})).all()
    held = {(w, loc, b): n for w, loc, b, n in rows if b in HELD and n}
    assert not held, f"units left in held buckets: {held}"
    net: dict[str, int] = {}
    for w, _, _, n in rows:
        net[w] = net.get(w, 0) + n
    examples = ROOT / "examples"
    ordered = sum(ln["quantity"] for ln in json.loads((examples / "order_placed.json").read_text())["data"]["lines"])
    for order in orders:
        assert net.get(ids.order_workflow_id("web", order)) == -ordered, (order, net)
    transfer = ids.transfer_workflow_id(k.transfer)
    assert net.get(transfer) == 0, net
    destination = json.loads((examples / "transfer_requested.json").read_text())["data"]["to_location_id"]
    assert any(w == transfer and loc == destination and b == "available" and n > 0 for w, loc, b, n in rows), rows
    returned = json.loads((examples / "return_received.json").read_text())["data"]
    back = {(loc, b): n for w, loc, b, n in rows if w == ids.return_workflow_id(k.ret) and n}
    assert back == {(returned["location_id"], "available"): sum(ln["quantity"] for ln in returned["lines"])}, back


async def _schedule_exists(client: Client) -> bool:
    try:
        await client.get_schedule_handle(SCHEDULE_ID).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def _until_polling(client: Client, task_queue: str, worker: ReleaseCommand, within: float = WAIT) -> None:
    request = DescribeTaskQueueRequest(namespace=client.namespace, task_queue=TaskQueue(name=task_queue),
                                       task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW)
    deadline = time.monotonic() + within
    while not (await client.workflow_service.describe_task_queue(request)).pollers:
        assert worker.running(), f"the release's worker exited ({worker.process.returncode})\n" + worker.tail()
        assert time.monotonic() < deadline, f"the release's worker never polled {task_queue}\n" + worker.tail()
        await asyncio.sleep(0.3)


async def _until_up(http: httpx.AsyncClient, api: ReleaseCommand, within: float = WAIT) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if (await http.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert api.running(), f"the release's api exited ({api.process.returncode})\n" + api.tail()
        assert time.monotonic() < deadline, "the release's api never answered /healthz\n" + api.tail()
        await asyncio.sleep(0.3)

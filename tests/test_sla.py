"""ProcessCases on the time-skipping server: a test-only process (tests/sla_probe.py) with real ExceptionCase
children and the real case register in PostgreSQL.

Timing is the server's clock: `env.sleep` moves it; `eventually` polls (real time) until the worker has caught
up with what the moved clock made due, so nothing here asserts by sleeping.

The time-skipping server stops skipping time for good once an ABANDONed child completes after its parent has
closed (seen with test-server 1.35's binary), and the server is shared by the whole session: so no test here
lets a process complete while its case stays open; cases left open are terminated first, then their process.
"""
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.cases import CaseActivities
from client.names import BUSINESS_KEY, LOCATION_IDS, OPEN_EXCEPTIONS, SKUS, SLA_BREACHED, STAGE
from domain.cases import CaseSnapshot, CaseStatus, ResolveRequest
from domain.events import Event, EventType
from domain.ids import exception_workflow_id
from domain.sla import CaseKind, Severity, SlaKind, SlaPolicy
from persistence.cases import get_case
from starters.exception_cases import resolve_case
from tests.sla_probe import OpenRequest, ProbeInput, ProbeState, SlaProbe
from tests.support import eventually, unique
from worker.factory import workflow_runner
from worker.registry import activity_methods
from workflows.exception_case import ExceptionCase

T = TypeVar("T")

POLICY = SlaPolicy(
    deadlines={SlaKind.TRANSFER_SHIP_OVERDUE: timedelta(hours=1), SlaKind.TRANSFER_OVERDUE: timedelta(hours=2)},
    escalate_every=timedelta(hours=4),
)


@pytest_asyncio.fixture(loop_scope="session")
async def env(time_skipping_env: WorkflowEnvironment, engine) -> AsyncIterator[tuple[WorkflowEnvironment, str]]:
    task_queue = unique("sla")
    async with Worker(time_skipping_env.client, task_queue=task_queue, workflows=[SlaProbe, ExceptionCase],
                      activities=activity_methods(CaseActivities(engine)), workflow_runner=workflow_runner()):
        yield time_skipping_env, task_queue
        await close_left_open(time_skipping_env.client)


STARTED: list[str] = []  # probe workflow IDs this module started


async def close_left_open(client: Client) -> None:
    """Terminate what a test left running (open cases keep escalating): the session's time-skipping server
    stops skipping time while a timer fires into a task queue nobody polls any more."""
    while STARTED:
        probe = client.get_workflow_handle(STARTED.pop())
        ids = []
        try:
            ids += [ref.exception_id for ref in (await probe.query(SlaProbe.state)).cases]
        except RPCError:
            pass
        for wf_id in [*ids, probe.id]:  # cases first, while their process still runs (see module docstring)
            handle = client.get_workflow_handle(wf_id)
            if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                await handle.terminate("test over")


def transfer_event(kind: EventType, transfer_id: str) -> Event:
    lines = [{"sku": "SKU-1", "quantity": 1}]
    return Event.parse(f"wh-{uuid.uuid4().hex[:8]}", kind, datetime.now(UTC), "wms",
                       {"transfer_id": transfer_id, "lines": lines})


async def start_probe(client: Client, task_queue: str, *, prefix: str = "transfer", **kw: object) -> WorkflowHandle:
    key = unique(prefix)
    probe_input = ProbeInput(business_key=key, **{"policy": POLICY, **kw})  # type: ignore[arg-type]
    STARTED.append(f"{prefix}:{key}")
    return await client.start_workflow(SlaProbe.run, probe_input, id=f"{prefix}:{key}", task_queue=task_queue)


async def probe_state(handle: WorkflowHandle) -> ProbeState:
    return await handle.query(SlaProbe.state)


async def case_state(client: Client, exception_id: str) -> CaseSnapshot:
    return await client.get_workflow_handle(exception_id).query("state", result_type=CaseSnapshot)


async def test_one_case_at_the_deadline_escalating_on_schedule_until_the_late_event_resolves_it(env, engine):
    tenv, tq = env
    client = tenv.client
    handle = await start_probe(client, tq, clocks=[SlaKind.TRANSFER_SHIP_OVERDUE])
    started = (await handle.describe()).start_time
    case_id = exception_workflow_id(handle.id, "transfer_ship_overdue")

    await tenv.sleep(timedelta(minutes=55))
    state = await probe_state(handle)
    assert state.cases == [] and state.open_count == 0 and not state.sla_breached

    await tenv.sleep(timedelta(minutes=10))
    state = await eventually(lambda: probe_state(handle), lambda s: len(s.cases) == 1)
    assert state.sla_breached and state.open_count == 1
    ref = state.cases[0]
    assert ref.exception_id == case_id and ref.kind == CaseKind.TRANSFER_SHIP_OVERDUE
    assert ref.status == CaseStatus.OPEN
    assert abs(ref.deadline - (started + timedelta(hours=1))) < timedelta(seconds=5)

    case = await eventually(lambda: case_state(client, case_id), lambda c: c is not None)
    assert case.severity == Severity.MEDIUM and case.escalations == 0
    assert case.process_workflow_id == handle.id and case.process_run_id == handle.result_run_id
    assert case.process_type == "SlaProbe" and case.business_key == handle.id.removeprefix("transfer:")
    assert case.location_ids == ["DC-EAST", "STORE-1"] and case.skus == ["SKU-1"]
    assert case.breached_at is not None and case.breached_at >= case.deadline
    assert "due" in case.summary
    registered = await eventually(lambda: get_case(engine, case_id), lambda c: c is not None)
    assert registered.status == CaseStatus.OPEN and registered.escalations == 0

    # Escalations every 4 h from the opening: medium -> high -> critical.
    await tenv.sleep(timedelta(hours=4))
    case = await eventually(lambda: case_state(client, case_id), lambda c: c.escalations == 1)
    assert case.severity == Severity.HIGH
    assert abs(case.last_escalated_at - (case.opened_at + timedelta(hours=4))) < timedelta(seconds=5)
    await tenv.sleep(timedelta(hours=4))
    case = await eventually(lambda: case_state(client, case_id), lambda c: c.escalations == 2)
    assert case.severity == Severity.CRITICAL
    assert abs(case.last_escalated_at - (case.opened_at + timedelta(hours=8))) < timedelta(seconds=5)
    await eventually(lambda: get_case(engine, case_id), lambda c: c.escalations == 2 and c.severity == "critical")

    # The late event arrives: the process resolves its case itself.
    await handle.signal(SlaProbe.event, transfer_event(EventType.TRANSFER_SHIPPED, "t1"))
    state = await eventually(lambda: probe_state(handle), lambda s: s.open_count == 0)
    assert state.sla_breached  # it did miss the deadline
    assert state.cases[0].status == CaseStatus.RESOLVED and state.cases[0].resolved_by == "process"
    final = await client.get_workflow_handle(case_id, result_type=CaseSnapshot).result()
    assert final.status == CaseStatus.RESOLVED and final.resolution is not None
    assert final.resolution.resolved_by == "process"
    assert final.resolution.note == "late event transfer.shipped arrived"
    registered = await get_case(engine, case_id)
    assert registered.status == CaseStatus.RESOLVED and registered.resolution.note == final.resolution.note

    # A resolved case escalates no more.
    await tenv.sleep(timedelta(hours=12))
    assert (await get_case(engine, case_id)).escalations == 2
    await handle.signal(SlaProbe.finish)
    assert (await handle.result()).open_count == 0


async def test_an_event_in_time_cancels_the_clock_and_opens_nothing(env, engine):
    tenv, tq = env
    handle = await start_probe(tenv.client, tq, clocks=[SlaKind.TRANSFER_SHIP_OVERDUE])
    await tenv.sleep(timedelta(minutes=30))
    await handle.signal(SlaProbe.event, transfer_event(EventType.TRANSFER_SHIPPED, "t1"))
    await eventually(lambda: handle.query(SlaProbe.state), lambda s: True)
    await tenv.sleep(timedelta(hours=3))
    await handle.signal(SlaProbe.finish)
    result = await handle.result()
    assert result.cases == [] and not result.sla_breached
    assert await get_case(engine, exception_workflow_id(handle.id, "transfer_ship_overdue")) is None


async def test_a_repeated_breach_never_opens_a_second_case(env, engine):
    tenv, tq = env
    client = tenv.client
    handle = await start_probe(client, tq, clocks=[SlaKind.TRANSFER_SHIP_OVERDUE])
    case_id = exception_workflow_id(handle.id, "transfer_ship_overdue")
    await tenv.sleep(timedelta(hours=1, minutes=5))
    await eventually(lambda: probe_state(handle), lambda s: len(s.cases) == 1)

    # The same clock started again, and the same kind raised by an event: still one case.
    await handle.signal(SlaProbe.start_clock, SlaKind.TRANSFER_SHIP_OVERDUE)
    await handle.signal(SlaProbe.open_case, OpenRequest(kind=CaseKind.TRANSFER_SHIP_OVERDUE))
    await tenv.sleep(timedelta(hours=2))
    state = await probe_state(handle)
    assert len(state.cases) == 1 and state.open_count == 1 and state.cases[0].exception_id == case_id


async def test_a_breach_that_acts_and_a_case_raised_by_an_event(env, engine):
    tenv, tq = env
    client = tenv.client
    handle = await start_probe(client, tq, clocks=[SlaKind.TRANSFER_OVERDUE], act_on=SlaKind.TRANSFER_OVERDUE)
    await tenv.sleep(timedelta(hours=2, minutes=1))
    state = await eventually(lambda: probe_state(handle), lambda s: s.acted is not None)
    assert state.acted == "breach" and state.sla_breached

    # An event-raised case: opened once, resolved by the process.
    await handle.signal(SlaProbe.open_case, OpenRequest(kind=CaseKind.RECEIPT_VARIANCE, summary="2 units short",
                                                        details={"SKU-1": "shipped 5, received 3"}))
    await handle.signal(SlaProbe.open_case, OpenRequest(kind=CaseKind.RECEIPT_VARIANCE, summary="again"))
    variance_id = exception_workflow_id(handle.id, "receipt_variance")
    case = await eventually(lambda: case_state(client, variance_id), lambda c: c is not None)
    assert case.summary == "2 units short" and case.details == {"SKU-1": "shipped 5, received 3"}
    assert case.deadline is None and case.breached_at is None
    state = await probe_state(handle)
    assert state.open_count == 2 and len(state.cases) == 2
    await handle.signal(SlaProbe.resolve_case, CaseKind.RECEIPT_VARIANCE)
    final = await client.get_workflow_handle(variance_id, result_type=CaseSnapshot).result()
    assert final.resolution.resolved_by == "process" and final.resolution.note == "settled by the process"

    # Ops resolve the SLA case: the process hears of it and its OpenExceptions drops to 0.
    sla_id = exception_workflow_id(handle.id, "transfer_overdue")
    snapshot = await resolve_case(client, sla_id, ResolveRequest(note="carrier lost it, claim filed",
                                                                 resolved_by="ops-anna"))
    assert snapshot.status == CaseStatus.RESOLVED and snapshot.resolution.resolved_by == "ops-anna"
    assert (await get_case(engine, sla_id)).status == CaseStatus.RESOLVED  # register agrees at once
    state = await eventually(lambda: probe_state(handle), lambda s: s.open_count == 0)
    ref = next(r for r in state.cases if r.kind == CaseKind.TRANSFER_OVERDUE)
    assert ref.status == CaseStatus.RESOLVED and ref.resolved_by == "ops-anna"
    # the late event after ops resolved it changes nothing and fails nothing
    await handle.signal(SlaProbe.event, transfer_event(EventType.TRANSFER_RECEIVED, "t1"))
    await handle.signal(SlaProbe.finish)
    result = await handle.result()
    assert result.open_count == 0 and {r.status for r in result.cases} == {CaseStatus.RESOLVED}


@pytest.mark.parametrize("kind", list(SlaKind))
async def test_every_sla_kind_opens_its_case_at_its_deadline(env, kind):
    tenv, tq = env
    policy = SlaPolicy(deadlines={kind: timedelta(minutes=30)})
    handle = await start_probe(tenv.client, tq, prefix="probe", policy=policy, clocks=[kind])
    await tenv.sleep(timedelta(minutes=31))
    state = await eventually(lambda: probe_state(handle), lambda s: len(s.cases) == 1)
    assert state.cases[0].kind == CaseKind(kind.value)
    assert state.cases[0].exception_id == f"exception:{handle.id}:{kind}"



async def test_on_a_real_server_timers_and_cases_carry_summaries_and_a_later_run_adopts_the_case(dev_env, engine):
    """User metadata (timer and child summaries) needs the dev server; so does a child start that finds its ID
    taken (the time-skipping server stops skipping time after one)."""
    client = dev_env.client
    tq = unique("sla-dev")
    policy = SlaPolicy(deadlines={SlaKind.TRANSFER_SHIP_OVERDUE: timedelta(seconds=2)})
    key = unique("transfer")
    wf_id = f"transfer:{key}"
    case_id = exception_workflow_id(wf_id, "transfer_ship_overdue")
    probe_input = ProbeInput(business_key=key, policy=policy, clocks=[SlaKind.TRANSFER_SHIP_OVERDUE])
    async with Worker(client, task_queue=tq, workflows=[SlaProbe, ExceptionCase],
                      activities=activity_methods(CaseActivities(engine)), workflow_runner=workflow_runner()):
        first = await client.start_workflow(SlaProbe.run, probe_input, id=wf_id, task_queue=tq)
        ref = (await eventually(lambda: probe_state(first), lambda s: len(s.cases) == 1)).cases[0]

        summaries = []
        async for event in first.fetch_history_events():
            if event.HasField("timer_started_event_attributes") and event.user_metadata.HasField("summary"):
                summaries.append(await client.data_converter.decode([event.user_metadata.summary]))
        assert summaries == [[f"SLA transfer_ship_overdue, due {ref.deadline:%Y-%m-%d %H:%M}"]]
        case_handle = client.get_workflow_handle(case_id)
        description = await eventually(case_handle.describe, lambda d: d is not None)
        assert await description.static_summary() == f"transfer_ship_overdue case: {key}"
        assert await description.static_details() == ref.summary
        described = await eventually(case_handle.describe, lambda d: d.typed_search_attributes.get(STAGE) == "open")
        attrs = described.typed_search_attributes
        assert attrs.get(BUSINESS_KEY) == key and attrs.get(OPEN_EXCEPTIONS) == 1 and attrs.get(SLA_BREACHED)
        assert attrs.get(LOCATION_IDS) == ["DC-EAST", "STORE-1"] and attrs.get(SKUS) == ["SKU-1"]
        process_attrs = (await first.describe()).typed_search_attributes
        assert process_attrs.get(OPEN_EXCEPTIONS) == 1 and process_attrs.get(SLA_BREACHED) is True
        case_run = description.run_id
        await first.signal(SlaProbe.finish)
        await first.result()

        # A later run of the same process breaches the same clock: it adopts the case, never a second one.
        again = await client.start_workflow(SlaProbe.run, probe_input, id=wf_id, task_queue=tq)
        state = await eventually(lambda: probe_state(again), lambda s: len(s.cases) == 1)
        assert state.cases[0].exception_id == case_id
        assert (await case_handle.describe()).run_id == case_run
        await again.signal(SlaProbe.event, transfer_event(EventType.TRANSFER_SHIPPED, "t1"))
        final = await client.get_workflow_handle(case_id, result_type=CaseSnapshot).result()
        assert final.resolution is not None and final.resolution.note == "late event transfer.shipped arrived"
        await again.signal(SlaProbe.finish)
        await again.result()

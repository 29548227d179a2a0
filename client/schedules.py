"""The Temporal Schedule `reconciliation` (`ensure_schedule`: create or update, safe on every start) and
`run_reconciliation` (one run now). Its policies and how to drive it: docs/runtime.md."""
import dataclasses
from datetime import UTC, datetime, timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleHandle,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from config.settings import Settings
from domain.reconciliation import (
    SCHEDULE_ID,
    WORKFLOW_TYPE,
    ReconciliationInput,
    ReconciliationReport,
    stale_thresholds,
)

RUN_TIMEOUT = timedelta(hours=1)  # a run stuck longer (e.g. a database outage) gives way to the next one


def reconciliation_input(settings: Settings) -> ReconciliationInput:
    """The run input under these settings: stale thresholds over the default and every per-channel SLA policy."""
    policies = [settings.sla_policy(None), *(settings.sla_policy(c) for c in sorted(settings.sla_by_channel))]
    return ReconciliationInput(stale_after=stale_thresholds(policies),
                               escalate_every=settings.exception_escalate_every)


def reconciliation_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            WORKFLOW_TYPE,
            reconciliation_input(settings),
            id=SCHEDULE_ID,
            task_queue=settings.task_queue,
            execution_timeout=RUN_TIMEOUT,
            static_summary="reconciliation: invariants, orphans, stale processes, inventory by legal entity",
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=settings.reconciliation_every)]),
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.SKIP,
            catchup_window=max(settings.reconciliation_every, timedelta(seconds=10)),
        ),
    )


async def ensure_schedule(client: Client, settings: Settings) -> ScheduleHandle:
    """Create the `reconciliation` schedule, or bring an existing one in line with `settings` (idempotent)."""
    schedule = reconciliation_schedule(settings)
    try:
        return await client.create_schedule(SCHEDULE_ID, schedule)
    except ScheduleAlreadyRunningError:
        pass
    handle = client.get_schedule_handle(SCHEDULE_ID)

    def keep_state(current: ScheduleUpdateInput) -> ScheduleUpdate:
        # ops may have paused it (with a note): an ensure on start must not undo that
        return ScheduleUpdate(schedule=dataclasses.replace(schedule, state=current.description.schedule.state))

    await handle.update(keep_state)
    return handle


async def run_reconciliation(client: Client, settings: Settings, *,
                             input: ReconciliationInput | None = None) -> ReconciliationReport:
    """Run one reconciliation now (workflow ID `reconciliation-manual-<time>`) and wait for its report."""
    workflow_id = f"{SCHEDULE_ID}-manual-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S.%fZ')}"
    return await client.execute_workflow(
        WORKFLOW_TYPE, input or reconciliation_input(settings), id=workflow_id, task_queue=settings.task_queue,
        execution_timeout=RUN_TIMEOUT, result_type=ReconciliationReport,
    )

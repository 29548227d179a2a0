"""Temporal actions and history events per process, read from workflow histories, and what they cost.

Actions are counted by the Temporal Cloud rules (docs.temporal.io/cloud/actions and /cloud/pricing, read
2026-11-23): a workflow start is 1, and a Signal-With-Start is 1 in total whether or not it starts the workflow; every
signal 1; every accepted update 1 (update-with-start: the start plus the update); every activity attempt 1; every
timer started 1; every UpsertSearchAttributes command 1 (start-time search attributes and TemporalChangeVersion alone are free); a child workflow
2 (initiated + attempted); a signal sent from a workflow 1; all local-activity markers of one workflow task 1;
queries 1 each (not in histories: the bench sends none while counting). Activity heartbeats are actions too but leave
no history event; no activity of an order lifecycle heartbeats.

Price: Temporal Cloud Pay-As-You-Go list price, first tier, USD 50 per million actions (USD 0.00005 an action;
falling to USD 25 per million from 100M actions a month), docs.temporal.io/cloud/pricing as read on 2026-11-23.
Plan fees (Essentials: the greater of USD 100/month or 5% of usage) and storage are left out.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory

PRICE_PER_MILLION_USD = 50.0
PRICE_SOURCE = ("Temporal Cloud Pay-As-You-Go list price, first tier (first 5M actions a month): USD 50 per "
                "million actions; docs.temporal.io/cloud/pricing, read 2026-11-23")

E = EventType

# Activities that hand an event to another process (a signal-with-start through the client): the skeleton copies
# them as a forward to its own settle workflow (bench/ceiling.py `bench_forward`), not as a no-op.
FORWARD_ACTIVITIES = frozenset({"forward_event", "bench_forward"})


@dataclass
class Segment:
    """What a workflow does after one incoming message (segment 0: after the start, before any message)."""

    message: str | None = None  # "update", "signal" or None
    activities: int = 0  # remote activities, forwards included
    forwards: int = 0  # of which hand an event to another process (FORWARD_ACTIVITIES)
    local_activities: int = 0
    timers: int = 0
    upserts: int = 0


@dataclass
class Count:
    workflow_type: str
    workflow_id: str
    events: int = 0
    actions: Counter = field(default_factory=Counter)  # reason -> actions
    activity_types: Counter = field(default_factory=Counter)
    segments: list[Segment] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.actions.values())


def count(history: WorkflowHistory) -> Count:
    """Actions (by reason), events, activity types and the per-message shape of one workflow history."""
    events = list(history.events)
    first = events[0].workflow_execution_started_event_attributes
    result = Count(workflow_type=first.workflow_type.name, workflow_id=history.workflow_id, events=len(events))
    result.segments.append(Segment())
    scheduled: dict[int, str] = {}
    attempts: dict[int, int] = {}
    markers_in_task: set[int] = set()
    last_task_completed = 0
    for index, event in enumerate(events):
        kind = event.event_type
        segment = result.segments[-1]
        if kind == E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            result.actions["workflow started (start, signal-with-start or update-with-start)"] += 1
        elif kind == E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            # the signal of a Signal-With-Start that started the workflow is in the start's one action
            if not (index == 1 and events[0].event_type == E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED):
                result.actions["signal received"] += 1
            result.segments.append(Segment("signal"))
        elif kind == E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            result.actions["update accepted"] += 1
            result.segments.append(Segment("update"))
        elif kind == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            scheduled[event.event_id] = name
            attempts[event.event_id] = 1
            result.activity_types[name] += 1
            segment.activities += 1
            segment.forwards += name in FORWARD_ACTIVITIES
        elif kind == E.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attrs = event.activity_task_started_event_attributes
            attempts[attrs.scheduled_event_id] = max(1, attrs.attempt)
        elif kind == E.EVENT_TYPE_TIMER_STARTED:
            result.actions["timer started"] += 1
            segment.timers += 1
        elif kind == E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = set(event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields)
            if fields - {"TemporalChangeVersion"}:  # the versioning attribute alone is exempt
                result.actions["search attributes upserted"] += 1
                segment.upserts += 1
        elif kind == E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            result.actions["child workflow (initiated + attempted)"] += 2
        elif kind == E.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
            result.actions["signal sent from the workflow"] += 1
        elif kind == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            last_task_completed = event.event_id
        elif kind == E.EVENT_TYPE_MARKER_RECORDED:
            if event.marker_recorded_event_attributes.marker_name == "core_local_activity":
                markers_in_task.add(last_task_completed)
                segment.local_activities += 1
    for event_id, name in scheduled.items():
        result.actions[f"activity {name}"] += attempts[event_id]
    if markers_in_task:
        result.actions["local activities (one per workflow task)"] += len(markers_in_task)
    return result


async def count_workflow(client: Client, workflow_id: str) -> Count:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return count(history)


def cost_per_thousand(actions_per_order: float, price_per_million: float = PRICE_PER_MILLION_USD) -> float:
    """USD for the actions of 1,000 orders at `price_per_million`."""
    return actions_per_order * 1000 * price_per_million / 1_000_000

"""What every process workflow shares: the inbox that holds and de-duplicates events, and the view ops see
(search attributes and current details), kept current from the process's own state.

Deterministic: no I/O, used only from workflow code.
"""
import logging
from collections.abc import Iterable, Sequence
from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow

from client import names as common
from domain.events import Event, EventType

with workflow.unsafe.imports_passed_through():
    from activities.registry import RegistryActivities
    from activities.routing import RoutingActivities
    from domain.late import ClosedProcess
    from workflows.release_2.calls import call


class Inbox:
    """Events a process has received, held until the process is ready for them, each applied once.

    Channels deliver at least once and out of order: an event is accepted once by `event_id`, kept in
    arrival order, and taken by the process when it reaches the stage that consumes it, so an early
    event waits instead of being dropped.
    """

    def __init__(self, pending: Iterable[Event] = ()) -> None:
        self.pending: list[Event] = []
        self.seen_ids: set[str] = set()
        self.applied_types: list[str] = []
        for event in pending:
            self.offer(event)

    def offer(self, event: Event) -> bool:
        """Hold `event`; False if this event_id was seen before (a redelivery)."""
        if event.event_id in self.seen_ids:
            return False
        self.seen_ids.add(event.event_id)
        self.pending.append(event)
        return True

    def has(self, *types: EventType) -> bool:
        return any(e.type in types for e in self.pending)

    def take(self, *types: EventType) -> Event | None:
        """Remove and return the oldest held event of one of `types`."""
        for i, event in enumerate(self.pending):
            if event.type in types:
                self.applied_types.append(str(event.type))
                return self.pending.pop(i)
        return None

    async def opening(self, type: EventType, *, within: timedelta) -> Event | None:
        """Wait up to `within` for the event that opens the process, then take it; None if it never came (the
        process was started by an early event and ends unopened)."""
        try:
            await workflow.wait_condition(lambda: self.has(type), timeout=within, timeout_summary=f"waiting for {type}")
        except TimeoutError:
            return None
        return self.take(type)

    async def next(self, *types: EventType) -> Event:
        """Wait for, then take, the oldest event of one of `types`."""
        await workflow.wait_condition(lambda: self.has(*types))
        event = self.take(*types)
        assert event is not None
        return event


class ProcessView:
    """The search attributes and current details of one process run; upserts only what changed."""

    def __init__(self, business_key: str, channel: str | None) -> None:
        self._values: dict[str, object] = {}
        self._details = ""
        updates = [common.BUSINESS_KEY.value_set(business_key)]
        if channel:
            updates.append(common.CHANNEL.value_set(channel))
        workflow.upsert_search_attributes(updates)

    def _set(self, key, value) -> None:  # noqa: ANN001
        if self._values.get(key.name) == value:
            return
        self._values[key.name] = value
        workflow.upsert_search_attributes([key.value_set(value)])

    def stage(self, stage: str) -> None:
        self._set(common.STAGE, stage)

    def skus(self, skus: Sequence[str]) -> None:
        self._set(common.SKUS, sorted(set(skus)))

    def locations(self, location_ids: Sequence[str]) -> None:
        self._set(common.LOCATION_IDS, sorted(set(location_ids)))

    def exceptions(self, open_count: int, breached: bool) -> None:
        self._set(common.OPEN_EXCEPTIONS, open_count)
        self._set(common.SLA_BREACHED, breached)

    def details(self, markdown: str) -> None:
        if markdown != self._details:
            self._details = markdown
            workflow.set_current_details(markdown)


class ProcessLog:
    """`workflow.logger` bound once with the business key, so every line a process writes carries it.

    `workflow.logger` is replay-safe (silent while replaying) and adds the workflow and run IDs itself; the
    structlog formatter lifts `business_key` and the keyword fields into the JSON line.
    """

    def __init__(self, business_key: str) -> None:
        self.business_key = business_key

    def _log(self, level: int, event: str, fields: dict[str, object]) -> None:
        workflow.logger.log(level, event, extra={"business_key": self.business_key, "fields": fields})

    def info(self, event: str, **fields: object) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: object) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, **fields: object) -> None:
        self._log(logging.ERROR, event, fields)


async def enter_closed(workflow_type: str, business_key: str, channel: str | None, outcome: str, stage: str,
                       state: BaseModel, inbox: Inbox) -> None:
    """A process's last step (release 2): enter it in the process registry with its final state, so its
    business key never opens a second process and the read API answers for it after Temporal's retention; then
    hand every event it still holds unapplied to the late-event path (forward_event finds the process ended),
    so nothing that reached a process is dropped when it ends."""
    info = workflow.info()
    await call(RegistryActivities.record_closed_process, ClosedProcess(
        workflow_id=info.workflow_id, run_id=info.run_id, workflow_type=workflow_type, business_key=business_key,
        channel=channel, outcome=outcome, stage=stage, closed_at=workflow.now(), state=state.model_dump(mode="json"),
    ), summary=f"registry: {workflow_type} {business_key} ended ({outcome})")
    handed = 0  # events stay in the inbox (the state query shows them held); ones that arrive meanwhile follow
    while handed < len(inbox.pending):
        event = inbox.pending[handed]
        await call(RoutingActivities.forward_event, event, summary=f"unapplied {event.type} to the late-event path")
        handed += 1


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A small markdown table for `set_current_details`."""
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)

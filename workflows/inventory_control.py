"""What the three inventory-control processes (ReceiveToStock, CountToAdjust, VendorReturn) share on top of
`Process`: one pydantic state, events held once, the opening wait and master-data checks, the wait for the next
event with its checkpoints, journal postings keyed like movements, and the end (docs/inventory-control.md).
"""
import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from temporalio import workflow

from domain.events import Event, EventType
from domain.items import Item, Location
from domain.journal import FinancialEvent
from domain.process import ProcessInput

with workflow.unsafe.imports_passed_through():
    from activities.erp import ErpActivities
    from adapters.erp import FinancialPosting, LookupItemsInput, LookupLocationsInput
    from workflows.calls import call_local
    from workflows.process import Process, Shown


class InventoryControl(Process):
    """The base of the inventory-control processes. A subclass passes its new state to `__init__` (a continued
    run gets its own back from `input.resume`) and sets `describe`, the markdown of its state for ops.

    The state (PoState, CountState, RtvState) has `stage` (an enum with REFUSED, and EXPIRED where an early event
    can start the process), `location_id`, `legal_entity`, `lines`, `skus`, `refusal_reason`, `notes`,
    `duplicate_events`, `ignored_events` and `exceptions`.
    """

    describe: Callable[[Any], str]  # the state as current details (domain's details_markdown)

    def __init__(self, input: ProcessInput, state: Any) -> None:  # noqa: ANN401 - the subclass's pydantic state
        super().__init__(input)
        self.state = type(state).model_validate(input.resume) if input.resume else state
        if input.resume and self.state.location_id:  # a continued run: the cases it opens keep their scope
            self.cases.scope(location_ids=[self.state.location_id], skus=self.state.skus)

    # --- events and state -------------------------------------------------------------------------------------
    def hold(self, event: Event) -> None:
        """The `event` signal: hold the event until the process is ready for it; a redelivery is counted once."""
        if not self.inbox.offer(event):
            self.state.duplicate_events += 1
            self.log.info("duplicate event", event_id=event.event_id, type=str(event.type))

    def current(self) -> Any:  # noqa: ANN401 - the subclass's state type
        """The state with its cases: the `state` query, and what the registry keeps at the end."""
        return self.state.model_copy(update={"exceptions": [r.model_dump(mode="json") for r in self.cases.refs()]})

    def shown(self) -> Shown:
        s = self.state
        return Shown(stage=str(s.stage), skus=s.skus, location_ids=self.location_ids(), details=self.describe(s))

    def location_ids(self) -> list[str]:
        return [self.state.location_id] if self.state.location_id else []

    # --- opening ----------------------------------------------------------------------------------------------
    def opening_pending(self) -> bool:
        """This run is to wait for the opening event: a first run, or one continued as new while it waited."""
        return self.input.resume is None or self.input.open_until is not None

    async def opened_by(self, opening: EventType) -> Event | None:
        """Wait for the event that opens the process (up to the policy's `open_timeout`) and take it; None if it
        never came: the process is expired."""
        if not self.inbox.has(opening):
            self.refresh()  # started by an early event: ops see it waiting (else the first upsert shows it open)
        event = await self.opening(opening, resume=self.state)
        if event is None:
            self.state.stage = type(self.state.stage).EXPIRED
            self.state.refusal_reason = f"{opening} did not arrive within {self.policy.open_timeout}"
        return event

    async def master_data(self, skus: list[str], location_ids: list[str]
                          ) -> tuple[dict[str, Item], dict[str, Location]]:
        """The item master's SKUs and the locations, read together as local activities (one action, no round
        trip through the server); an empty list is not read."""
        async def items() -> dict[str, Item]:
            if not skus:
                return {}
            found = await call_local(ErpActivities.lookup_items, LookupItemsInput(skus=skus),
                                     summary=f"look up {len(skus)} SKUs")
            return found.items

        async def locations() -> dict[str, Location]:
            if not location_ids:
                return {}
            found = await call_local(ErpActivities.lookup_locations, LookupLocationsInput(location_ids=location_ids),
                                     summary=f"look up {', '.join(location_ids)}")
            return found.locations

        known_items, known_locations = await asyncio.gather(items(), locations())
        return known_items, known_locations

    def accepted(self, location_id: str, location: Location | None, *, nothing: str) -> bool:
        """The opening checks after the lines are planned: the location is known (its legal entity is kept) and
        at least one line was accepted (else refused with `nothing`). The cases are scoped either way."""
        s = self.state
        self.cases.scope(location_ids=[location_id], skus=s.skus)
        if location is None:
            return self.refuse(f"unknown location {location_id}")
        s.legal_entity = location.legal_entity
        if not s.lines:
            return self.refuse(nothing)
        return True

    def refuse(self, reason: str) -> bool:
        self.state.stage = type(self.state.stage).REFUSED
        self.state.refusal_reason = reason
        self.log.warning("refused", reason=reason)
        return False

    # --- waiting ----------------------------------------------------------------------------------------------
    async def until(self, ready: Callable[[], bool]) -> None:
        """Wait for `ready`, continuing as new at the safe points when the history is long: on entry (what came
        before is applied) and whenever an event arrives that does not make it ready (held for later, ignored, a
        redelivery), so a source that keeps sending cannot grow the history without bound."""
        await self.checkpoint(self.state)
        while not ready():
            received = self._received()
            await workflow.wait_condition(lambda received=received: ready() or self._received() > received)
            if not ready():
                await self.checkpoint(self.state)

    async def next_event(self, *types: EventType) -> Event:
        """Take the oldest held event of `types`, waiting for it (`until`)."""
        await self.until(lambda: self.inbox.has(*types))
        event = self.inbox.take(*types)
        assert event is not None
        return event

    def _received(self) -> int:
        """Signals received so far: events held or applied, ignored (seen), and redeliveries."""
        return len(self.inbox.seen_ids) + self.state.duplicate_events

    # --- books and end ----------------------------------------------------------------------------------------
    def posting(self, step: str, event: FinancialEvent, amount: Decimal, *, location_id: str | None, currency: str,
                memo: str) -> FinancialPosting:
        """A journal entry keyed `{workflow ID}:{step}` like the movements (a retry or a replay posts it once)."""
        return FinancialPosting(key=f"{self.workflow_id}:{step}", event=event, location_id=location_id,
                                amount=amount, currency=currency, memo=memo, workflow_id=self.workflow_id,
                                run_id=workflow.info().run_id, reference=self.input.business_key)

    async def finish(self) -> None:
        """The end of every path: the events still held are named in the state, and `close` hands them to the
        late-event path."""
        s = self.state
        s.ignored_events = [e.event_id for e in self.inbox.pending]
        await self.close(str(s.stage), str(s.stage), self.current())

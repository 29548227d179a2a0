"""A test-only process that does nothing but use ProcessCases, so the SLA mechanism is tested on its own.

Events come on the `event` signal like in every process; an event whose type is in STOPS stops that clock.
"""

from pydantic import BaseModel, Field
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.cases import CaseRef
    from domain.events import Event, EventType
    from domain.sla import CaseKind, SlaKind, SlaPolicy
    from workflows.parts import Inbox, ProcessLog, ProcessView
    from workflows.sla import ProcessCases

STOPS = {
    EventType.TRANSFER_SHIPPED: SlaKind.TRANSFER_SHIP_OVERDUE,
    EventType.TRANSFER_RECEIVED: SlaKind.TRANSFER_OVERDUE,
}


class ProbeInput(BaseModel):
    business_key: str
    policy: SlaPolicy = Field(default_factory=SlaPolicy)
    clocks: list[SlaKind] = Field(default_factory=list)
    act_on: SlaKind | None = None  # wait "event or breach" on this clock (a breach that acts)


class OpenRequest(BaseModel):
    kind: CaseKind
    summary: str = "something does not add up"
    details: dict[str, str] = Field(default_factory=dict)


class ProbeState(BaseModel):
    cases: list[CaseRef]
    open_count: int
    sla_breached: bool
    acted: str | None = None


@workflow.defn(name="SlaProbe")
class SlaProbe:
    @workflow.init
    def __init__(self, input: ProbeInput) -> None:
        self.view = ProcessView()
        self.inbox = Inbox()
        self.cases = ProcessCases(process_type="SlaProbe", business_key=input.business_key, channel="web",
                                  policy=input.policy, view=self.view, inbox=self.inbox,
                                  log=ProcessLog(input.business_key))
        self.done = False
        self.acted: str | None = None

    @workflow.signal(name="event")
    def event(self, event: Event) -> None:
        self.inbox.offer(event)

    @workflow.signal(name="start_clock")
    def start_clock(self, kind: SlaKind) -> None:
        self.cases.start_clock(kind)

    @workflow.signal(name="open_case")
    def open_case(self, request: OpenRequest) -> None:
        self.cases.open_case(request.kind, summary=request.summary, details=request.details)

    @workflow.signal(name="resolve_case")
    def resolve_case(self, kind: CaseKind) -> None:
        self.cases.resolve_case(kind, note="settled by the process")

    @workflow.signal(name="finish")
    def finish(self) -> None:
        self.done = True

    @workflow.query(name="state")
    def state(self) -> ProbeState:
        return ProbeState(cases=self.cases.refs(), open_count=self.cases.open_count,
                          sla_breached=self.cases.sla_breached, acted=self.acted)

    @workflow.run
    async def run(self, input: ProbeInput) -> ProbeState:
        self.cases.scope(location_ids=["DC-EAST", "STORE-1"], skus=["SKU-1"])
        for kind in input.clocks:
            self.cases.start_clock(kind)
        if input.act_on is not None:
            came = await self.cases.wait(input.act_on, lambda: self.inbox.has(*STOPS))
            self.acted = "event" if came else "breach"
        while not self.done:
            await workflow.wait_condition(lambda: self.done or bool(self.inbox.pending))
            while (event := self.inbox.take(*EventType)) is not None:
                if event.type in STOPS:
                    self.cases.stop_clock(STOPS[event.type], by=str(event.type))
        await self.cases.drain()
        return self.state()


@workflow.defn(name="ProcessStandIn")
class ProcessStandIn:
    """Stands in for a case's process in tests of the case alone: takes the case's `case_resolved` notice.

    (A signal to a workflow that does not exist stalls the time-skipping server's clock for the session.)"""

    def __init__(self) -> None:
        self.notices: list[dict] = []

    @workflow.signal(name="case_resolved")
    def case_resolved(self, notice: dict) -> None:
        self.notices.append(notice)

    @workflow.query(name="notices")
    def get_notices(self) -> list[dict]:
        return self.notices

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

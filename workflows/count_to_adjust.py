"""CountToAdjust: a cycle count turned into adjustments, with ops approval beyond tolerance (`count:{count_id}`)."""
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.counts import CountOutcome, CountState, DecisionRequest
    from domain.events import Event
    from domain.process import ProcessInput
    from workflows.common import on_release_3
    from workflows.release_2 import count_to_adjust as release_2


@workflow.defn(name="CountToAdjust")
class CountToAdjust:
    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        self.legacy = None if on_release_3() else release_2.CountToAdjust(input)
        if self.legacy is None:  # release 3: implementation to come in this class
            self.legacy = release_2.CountToAdjust(input)

    @workflow.signal(name="event", description="count.submitted (the count itself); another count for the same "
                                                "ID is noted and ignored.")
    def event(self, event: Event) -> None:
        return self.legacy.event(event)

    @workflow.update(name="approve", description="Ops approve the variances beyond tolerance: they are adjusted "
                                                 "(reason cycle_count). {note, decided_by}")
    async def approve(self, request: DecisionRequest) -> CountState:
        return await self.legacy.approve(request)

    @workflow.update(name="reject", description="Ops reject the variances beyond tolerance: the ledger stays as it "
                                                "is (recount). {note, decided_by}")
    async def reject(self, request: DecisionRequest) -> CountState:
        return await self.legacy.reject(request)

    @approve.validator
    def _validate_approve(self, request: DecisionRequest) -> None:
        return self.legacy._validate_approve(request)

    @reject.validator
    def _validate_reject(self, request: DecisionRequest) -> None:
        return self.legacy._validate_reject(request)

    @workflow.query(name="state", description="The count: per SKU counted, ledger at counted_at, variance, value, "
                                              "tolerance, status, adjusted; the decision; cases.")
    def query_state(self) -> CountState:
        return self.legacy.query_state()

    @workflow.run
    async def run(self, input: ProcessInput) -> CountOutcome:
        return await self.legacy.run(input)

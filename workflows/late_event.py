"""LateEvent: an event that came after its process had ended (workflow ID `late:{event identity}`)."""
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.late import LateEventInput, LateEventOutcome
    from workflows.common import on_release_3
    from workflows.release_2 import late_event as release_2


@workflow.defn(name="LateEvent")
class LateEvent:
    @workflow.init
    def __init__(self, input: LateEventInput) -> None:
        self.legacy = None if on_release_3() else release_2.LateEvent(input)
        if self.legacy is None:  # release 3: implementation to come in this class
            self.legacy = release_2.LateEvent(input)

    @workflow.query(name="state", description="The late event: its stage, and once handled what was done with it.")
    def state(self) -> dict:
        return self.legacy.state()

    @workflow.run
    async def run(self, input: LateEventInput) -> LateEventOutcome:
        return await self.legacy.run(input)

"""ReturnToRefund: a customer return from authorization to refund paid (workflow ID `return:{return_id}`)."""
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.events import Event
    from domain.process import ProcessInput
    from domain.returns import ReturnOutcome, ReturnState
    from workflows.common import on_release_3
    from workflows.release_2 import return_to_refund as release_2


@workflow.defn(name="ReturnToRefund")
class ReturnToRefund:
    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        self.legacy = None if on_release_3() else release_2.ReturnToRefund(input)
        if self.legacy is None:  # release 3: implementation to come in this class
            self.legacy = release_2.ReturnToRefund(input)

    @workflow.run
    async def run(self, input: ProcessInput) -> ReturnOutcome:
        return await self.legacy.run(input)

    @workflow.signal(name="event", description="A business event of this return (return.authorized, "
                     "return.received, return.inspected, refund.settled); held until its turn.")
    def event(self, event: Event) -> None:
        return self.legacy.event(event)

    @workflow.query(name="state", description="The return: stage, lines with units by state, receipts, refund, "
                    "exception cases, workflow ID.")
    def state(self) -> ReturnState:
        return self.legacy.state()

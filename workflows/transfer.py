"""Transfer: stock from one location to another, through in_transit, with variances handled."""
from temporalio import workflow

with workflow.unsafe.imports_passed_through():

    from domain.events import Event
    from domain.process import ProcessInput
    from domain.transfer import CancelRequest, TransferOutcome, TransferState
    from workflows.common import on_release_3
    from workflows.release_2 import transfer as release_2


@workflow.defn(name="Transfer")
class Transfer:
    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        self.legacy = None if on_release_3() else release_2.Transfer(input)
        if self.legacy is None:  # release 3: implementation to come in this class
            self.legacy = release_2.Transfer(input)

    @workflow.signal(name="event", description="A transfer event (transfer.requested / shipped / received); held "
                                                "until the transfer is ready for it, each event_id applied once.")
    def event(self, event: Event) -> None:
        return self.legacy.event(event)

    @workflow.update(name="cancel", description="Cancel the transfer before it ships: releases the reservation. "
                                                "Refused once shipped.")
    async def cancel(self, request: CancelRequest) -> TransferState:
        return await self.legacy.cancel(request)

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        return self.legacy._validate_cancel(request)

    @workflow.query(name="state", description="The transfer: stage, lines by state (requested, reserved, shipped, "
                                              "received, in transit, short, over), receipts, cases.")
    def query_state(self) -> TransferState:
        return self.legacy.query_state()

    @workflow.run
    async def run(self, input: ProcessInput) -> TransferOutcome:
        return await self.legacy.run(input)


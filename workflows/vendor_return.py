"""VendorReturn: units in `vendor_return` shipped back to the supplier and credited (workflow ID `rtv:{rtv_id}`)."""
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.events import Event
    from domain.process import ProcessInput
    from domain.vendor_returns import RtvOutcome, RtvState
    from workflows.common import on_release_3
    from workflows.release_2 import vendor_return as release_2


@workflow.defn(name="VendorReturn")
class VendorReturn:
    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        self.legacy = None if on_release_3() else release_2.VendorReturn(input)
        if self.legacy is None:  # release 3: implementation to come in this class
            self.legacy = release_2.VendorReturn(input)

    @workflow.signal(name="event", description="vendor_return.shipped / vendor_credit.received; held until the "
                                                "return is ready for it, each event_id applied once.")
    def event(self, event: Event) -> None:
        return self.legacy.event(event)

    @workflow.query(name="state", description="The return to vendor: lines shipped / short at standard cost, the "
                                              "receivable, credits and their difference, cases.")
    def query_state(self) -> RtvState:
        return self.legacy.query_state()

    @workflow.run
    async def run(self, input: ProcessInput) -> RtvOutcome:
        return await self.legacy.run(input)

"""ReceiveToStock: a purchase order received in parts into `available` (workflow ID `po:{po_id}`)."""
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.events import Event
    from domain.process import ProcessInput
    from domain.receiving import PoOutcome, PoState
    from workflows.common import on_release_3
    from workflows.release_2 import receive_to_stock as release_2


@workflow.defn(name="ReceiveToStock")
class ReceiveToStock:
    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        self.legacy = None if on_release_3() else release_2.ReceiveToStock(input)
        if self.legacy is None:  # release 3: implementation to come in this class
            self.legacy = release_2.ReceiveToStock(input)

    @workflow.signal(name="event", description="A purchase order event (purchase_order.created / received / "
                                                "closed); held until the PO is ready for it, each event_id once.")
    def event(self, event: Event) -> None:
        return self.legacy.event(event)

    @workflow.query(name="state", description="The purchase order: stage, lines ordered / received / outstanding / "
                                              "cancelled in EA, receipts with their price variance, cases.")
    def query_state(self) -> PoState:
        return self.legacy.query_state()

    @workflow.run
    async def run(self, input: ProcessInput) -> PoOutcome:
        return await self.legacy.run(input)

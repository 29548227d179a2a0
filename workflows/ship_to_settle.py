"""Ship-to-settle: from each shipment to recognised, captured and settled money. One process per order."""
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.events import Event
    from domain.process import ProcessInput
    from domain.settlement import SettleOutcome, SettleState
    from workflows.common import on_release_3
    from workflows.release_2 import ship_to_settle as release_2


@workflow.defn(name="ShipToSettle")
class ShipToSettle:
    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        self.legacy = None if on_release_3() else release_2.ShipToSettle(input)
        if self.legacy is None:  # release 3: implementation to come in this class
            self.legacy = release_2.ShipToSettle(input)

    @workflow.signal(name="event", description="A business event of this order's settlement: order.shipped, "
                     "shipment.delivered, payment.settled or order.closed. Redeliveries (same event_id) are ignored.")
    def event(self, event: Event) -> None:
        return self.legacy.event(event)

    @workflow.query(name="state", description="Stage, shipments (value, capture, delivery, settlement), "
                    "settlements, totals and exception cases of this order's settlement.")
    def state(self) -> SettleState:
        return self.legacy.state()

    @workflow.run
    async def run(self, input: ProcessInput) -> SettleOutcome:
        return await self.legacy.run(input)

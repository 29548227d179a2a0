"""ReserveToFulfill: the order process from placement to hand-over (workflow ID `order:{channel}:{order_id}`)."""
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.events import Event
    from domain.order import CancelRequest, CancelResult, OrderDecision, OrderOutcome, OrderState
    from domain.process import ProcessInput
    from workflows.common import on_release_3
    from workflows.release_2 import reserve_to_fulfill as release_2


@workflow.defn(name="ReserveToFulfill")
class ReserveToFulfill:
    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        self.legacy = None if on_release_3() else release_2.ReserveToFulfill(input)
        if self.legacy is None:  # release 3: implementation to come in this class
            self.legacy = release_2.ReserveToFulfill(input)

    @workflow.run
    async def run(self, input: ProcessInput) -> OrderOutcome:
        return await self.legacy.run(input)

    @workflow.signal(name="event", description="A business event of this order (order.cancelled, "
                     "fulfillment.picked, shipment.dispatched, order.collected); held until its turn.")
    def event(self, event: Event) -> None:
        return self.legacy.event(event)

    @workflow.update(name="place", description="order.placed: reserve and answer the reservation decision; a "
                     "redelivery answers the same decision.")
    async def place(self, event: Event) -> OrderDecision:
        return await self.legacy.place(event)

    @place.validator
    def _validate_place(self, event: Event) -> None:
        return self.legacy._validate_place(event)

    @workflow.update(name="cancel", description="Ops cancels the order: gives back what is still reserved or "
                     "picked and answers what was released.")
    async def cancel(self, request: CancelRequest) -> CancelResult:
        return await self.legacy.cancel(request)

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        return self.legacy._validate_cancel(request)

    @workflow.query(name="state", description="The order: stage, lines with quantities by state, shipments, "
                    "exception cases, workflow ID.")
    def state(self) -> OrderState:
        return self.legacy.state()

"""PLACEHOLDER: being written by its issue; replaced wholesale."""
from temporalio import workflow


@workflow.defn(name="ReserveToFulfill")
class ReserveToFulfill:
    @workflow.run
    async def run(self, input: dict) -> None:
        raise NotImplementedError

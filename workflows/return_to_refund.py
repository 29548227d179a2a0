"""PLACEHOLDER: being written by its issue; replaced wholesale."""
from temporalio import workflow


@workflow.defn(name="ReturnToRefund")
class ReturnToRefund:
    @workflow.run
    async def run(self, input: dict) -> None:
        raise NotImplementedError

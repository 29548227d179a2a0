"""PLACEHOLDER: being written by its issue; replaced wholesale."""
from temporalio import workflow


@workflow.defn(name="Transfer")
class Transfer:
    @workflow.run
    async def run(self, input: dict) -> None:
        raise NotImplementedError

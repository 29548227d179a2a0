"""PLACEHOLDER: being written by its issue; replaced wholesale."""
from temporalio import workflow


@workflow.defn(name="ExceptionCase")
class ExceptionCase:
    @workflow.run
    async def run(self, input: dict) -> None:
        raise NotImplementedError

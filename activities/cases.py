"""The activity that keeps the exception-case register (persistence.cases) current for the ExceptionCase
workflow."""
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from domain.cases import CaseSnapshot
from persistence import cases


class CaseActivities:
    """Activities of the case register (registered by worker/registry.py)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @activity.defn(name="record_case")
    async def record_case(self, case: CaseSnapshot) -> bool:
        return await cases.record(self.engine, case)

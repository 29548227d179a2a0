"""Reserve-to-fulfill: the reservation decision the `place` update answers (the contract's order.placed reply)."""
from enum import StrEnum

from pydantic import BaseModel, Field


class Decision(StrEnum):
    RESERVED = "reserved"
    PARTIALLY_RESERVED = "partially_reserved"
    REJECTED = "rejected"


class LineDecision(BaseModel):
    line_id: str
    reserved_quantity: int  # base units (EA)
    location_id: str | None = None
    reason: str | None = None  # why a line is short or rejected (unknown SKU, unknown unit, no stock)


class OrderDecision(BaseModel):
    workflow_id: str
    decision: Decision
    lines: list[LineDecision] = Field(default_factory=list)

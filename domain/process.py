"""What every process workflow is started with, and the per-channel rules it follows."""
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from domain.cases import CarriedCases
from domain.events import Event
from domain.sla import SlaPolicy


class PartialPolicy(StrEnum):
    ACCEPT = "accept"  # go ahead with what could be reserved
    REJECT = "reject"  # refuse the whole order or transfer


class ProcessPolicy(BaseModel):
    """Rules resolved from settings when the process starts, so replay never depends on today's settings."""

    model_config = ConfigDict(frozen=True)

    sla: SlaPolicy = Field(default_factory=SlaPolicy)
    partial: PartialPolicy = PartialPolicy.ACCEPT
    settlement_tolerance: Decimal = Decimal("0.00")
    # A process opened by an early event waits this long for the event that really opens it.
    open_timeout: timedelta = timedelta(days=7)
    # Transfer: a shortage becomes final this long after the last receipt with no further receipt.
    receipt_grace: timedelta = timedelta(hours=24)
    # Transfer (release 2): the units still reserved and unshipped are released this long after the last shipment
    # notice with no further notice, unless a notice said `complete` first.
    ship_grace: timedelta = timedelta(hours=24)
    # ReceiveToStock: a PO line received beyond ordered x (1 + this) opens an over_receipt case.
    over_receipt_tolerance: Decimal = Decimal("0.05")
    # CountToAdjust: a SKU's variance within both bounds is adjusted at once; beyond either, ops decide.
    count_tolerance_units: int = 2
    count_tolerance_value: Decimal = Decimal("25.00")
    # Release 3: a run continues as new once its history has this many events (or Temporal suggests it), so a
    # source that keeps sending can never push a process to Temporal's history limit.
    continue_as_new_after: int = 2000


class ProcessInput(BaseModel):
    """Start input of ReserveToFulfill, ShipToSettle, Transfer and ReturnToRefund.

    A process may be started by any of its events (signal-with-start); the opening event arrives like every
    other one. Across continue-as-new (release 3) the next run gets the events not yet applied (`pending`),
    the event IDs already seen, its SLA clocks and cases, the process's own state (`resume`) and, while it still
    waits for its opening event, that wait's deadline (`open_until`).
    """

    business_key: str
    channel: str | None = None
    policy: ProcessPolicy = Field(default_factory=ProcessPolicy)
    pending: list[Event] = Field(default_factory=list)
    seen_event_ids: list[str] = Field(default_factory=list)
    carried_cases: CarriedCases | None = None
    resume: dict[str, Any] | None = None
    # A process still waiting for its opening event when it continued as new: when that wait ends (the first
    # run's start + `policy.open_timeout`), so a flood of early events never extends it.
    open_until: datetime | None = None

"""What every process workflow is started with, and the per-channel rules it follows."""
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

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


class ProcessInput(BaseModel):
    """Start input of ReserveToFulfill, ShipToSettle, Transfer and ReturnToRefund.

    A process may be started by any of its events (signal-with-start); the opening event arrives like every
    other one. `pending` carries events not yet applied across continue-as-new.
    """

    business_key: str
    channel: str | None = None
    policy: ProcessPolicy = Field(default_factory=ProcessPolicy)
    pending: list[Event] = Field(default_factory=list)

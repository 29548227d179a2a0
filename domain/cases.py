"""Exception cases: what ops sees when a deadline passes or an event does not add up."""
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, Field

from domain.sla import CaseKind, Severity, SlaKind


class CaseStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class CaseRef(BaseModel):
    """A case as a process's `state` query shows it."""

    exception_id: str
    kind: CaseKind
    status: CaseStatus
    opened_at: datetime
    deadline: datetime | None = None
    summary: str
    breached_at: datetime | None = None
    resolved_by: str | None = None
    resolution_note: str | None = None


class CarriedClock(BaseModel):
    """An SLA clock carried across continue-as-new: its deadline, and whether it already breached."""

    kind: SlaKind
    deadline: datetime | None = None
    stopped: bool = False
    breached: bool = False


class CarriedCases(BaseModel):
    """What a process's SLA clocks and cases carry into the next run (continue-as-new)."""

    clocks: list[CarriedClock] = Field(default_factory=list)
    cases: list[CaseRef] = Field(default_factory=list)


class Lineage(BaseModel):
    """Where a case comes from: the process run, the events it had seen, the deadline it missed."""

    process_workflow_id: str
    process_run_id: str
    process_type: str
    events_seen: list[str] = Field(default_factory=list)  # event types in the order the process applied them
    deadline: datetime | None = None
    breached_at: datetime | None = None


class ExceptionCaseInput(BaseModel):
    exception_id: str  # = its workflow ID, exception:{process workflow ID}:{kind}
    kind: CaseKind
    business_key: str
    channel: str | None = None
    location_ids: list[str] = Field(default_factory=list)
    skus: list[str] = Field(default_factory=list)
    severity: Severity = Severity.MEDIUM
    summary: str
    details: dict[str, str] = Field(default_factory=dict)  # e.g. expected / settled amounts, short quantities
    lineage: Lineage
    escalate_every: timedelta = timedelta(hours=4)
    opened_at: datetime
    # carried over continue-as-new
    escalations: int = 0
    last_escalated_at: datetime | None = None
    escalations_per_run: int = 500  # continue-as-new after this many (keeps each run's history small)


class Resolution(BaseModel):
    resolved_at: datetime
    resolved_by: str  # "process" when the late event arrived, else the ops user
    note: str


class ResolveRequest(BaseModel):
    note: str
    resolved_by: str = "ops"


class CaseSnapshot(BaseModel):
    """A case as the read API, the database and ops see it."""

    exception_id: str
    kind: CaseKind
    status: CaseStatus
    severity: Severity
    business_key: str
    channel: str | None = None
    location_ids: list[str] = Field(default_factory=list)
    skus: list[str] = Field(default_factory=list)
    summary: str
    details: dict[str, str] = Field(default_factory=dict)
    process_workflow_id: str
    process_run_id: str
    process_type: str | None = None
    events_seen: list[str] = Field(default_factory=list)
    opened_at: datetime
    deadline: datetime | None = None
    breached_at: datetime | None = None
    escalations: int = 0
    last_escalated_at: datetime | None = None
    resolution: Resolution | None = None


class CaseResolved(BaseModel):
    """Sent by a case to its process when someone other than the process resolved it (ops), so the process's
    OpenExceptions and its `state` query stay true without the process polling its cases."""

    exception_id: str
    kind: CaseKind
    resolution: Resolution


class CaseFilter(BaseModel):
    """What `GET /exceptions` and `retailflow exceptions list` may ask the case register for."""

    status: CaseStatus | None = None
    kind: CaseKind | None = None
    business_key: str | None = None
    location_id: str | None = None
    limit: int = 500
    after: tuple[datetime, str] | None = None  # (opened_at, exception_id) of the last case of the previous page

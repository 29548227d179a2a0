"""The one SLA-timer and exception-case mechanism every process uses.

INTERFACE STUB (foundation): the SLA issue implements these bodies; process workflows code against it.

Usage inside a process workflow:

    self.cases = ProcessCases(process_type="Transfer", business_key=..., channel=None,
                              policy=input.policy.sla, view=self.view)
    self.cases.start_clock(SlaKind.TRANSFER_SHIP_OVERDUE)          # clock starts now
    event = await self.inbox.next(EventType.TRANSFER_SHIPPED, ...)   # the process waits as usual
    self.cases.stop_clock(SlaKind.TRANSFER_SHIP_OVERDUE, by=event.type)  # resolves the case if it breached
    self.cases.open_case(CaseKind.RECEIPT_VARIANCE, summary=..., details={...})
    if self.cases.breached(SlaKind.PICKUP_EXPIRED): ...            # breaches that act
    await self.cases.drain()                                         # before run() returns

A breach never fails the process: at the deadline the clock opens an `ExceptionCase` child workflow
(ID exception:{process workflow ID}:{kind}, parent-close ABANDON), sets SlaBreached / OpenExceptions
through the ProcessView, logs, and the process keeps waiting for the real event.
"""
from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel

from domain.cases import CaseStatus
from domain.sla import CaseKind, SlaKind, SlaPolicy
from workflows.process import ProcessView


class CaseRef(BaseModel):
    """A case as a process's `state` query shows it."""

    exception_id: str
    kind: CaseKind
    status: CaseStatus
    opened_at: datetime
    deadline: datetime | None = None
    summary: str


class ProcessCases:
    def __init__(
        self,
        *,
        process_type: str,
        business_key: str,
        channel: str | None,
        policy: SlaPolicy,
        view: ProcessView,
    ) -> None:
        raise NotImplementedError

    def scope(self, *, location_ids: Sequence[str] = (), skus: Sequence[str] = ()) -> None:
        """What the process touches, carried onto every case it opens (for ops' list queries)."""
        raise NotImplementedError

    def start_clock(self, kind: SlaKind, *, since: datetime | None = None) -> None:
        """Start the named clock (deadline from the policy); starting a running or stopped clock again is a no-op."""
        raise NotImplementedError

    def stop_clock(self, kind: SlaKind, *, by: str) -> None:
        """The awaited event came: cancel the timer, or resolve the case if the clock had breached."""
        raise NotImplementedError

    def breached(self, kind: SlaKind) -> bool:
        raise NotImplementedError

    def open_case(self, kind: CaseKind, *, summary: str, details: dict[str, str] | None = None) -> None:
        """Open a case an event raised (short_pick, receipt_variance, settlement_mismatch, over_capture).
        At most one case per kind per process."""
        raise NotImplementedError

    def resolve_case(self, kind: CaseKind, *, note: str) -> None:
        raise NotImplementedError

    @property
    def open_count(self) -> int:
        raise NotImplementedError

    @property
    def sla_breached(self) -> bool:
        raise NotImplementedError

    def refs(self) -> list[CaseRef]:
        raise NotImplementedError

    async def drain(self) -> None:
        """Wait until every case start and resolve signal this process issued has been sent."""
        raise NotImplementedError

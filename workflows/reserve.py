"""Reserve with retry: the one loop ReserveToFulfill and Transfer reserve stock with (release 3).

Availability is read (a local activity: a read, no server round trip), the process's own rule plans what to
reserve where, and one RESERVE movement per location is posted, keyed `reserve:{location}` (`:{attempt}` on a
re-plan). A movement refused with InsufficientStock lost a race for the units to another process: those lines
are planned again against fresh availability, up to `RESERVE_ATTEMPTS` times; what is still unplaced after that
is the caller's to refuse.
"""
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.erp import ErpActivities
    from adapters.erp import AvailabilityInput, AvailabilityResult
    from domain.errors import ErrorType
    from domain.inventory import MovementKind, MovementLine
    from workflows.calls import call, call_local, refusal_type
    from workflows.process import Process

RESERVE_ATTEMPTS = 3

K = TypeVar("K")  # what the caller reserves by: an order line ID, a transfer's SKU


class Reserved(Generic[K]):
    """What was reserved (location -> key -> units) and what could not be placed."""

    def __init__(self) -> None:
        self.at: dict[str, dict[K, int]] = {}
        self.unplaced: list[K] = []
        self.attempts = 0


async def reserve_with_retry(
    process: Process,
    todo: Mapping[K, tuple[str, int]],
    *,
    location_ids: list[str] | None,
    plan: Callable[[Mapping[K, tuple[str, int]], AvailabilityResult], Mapping[str, Mapping[K, int]]],
    lines: Callable[[str, Mapping[K, int]], list[MovementLine]],
    reason: str,
    local: bool = False,
) -> Reserved[K]:
    """Reserve `todo` (key -> (sku, units)) where `plan` says (location -> key -> units, from availability at
    `location_ids`, None: everywhere); `lines` turns one location's share into movement lines.

    `local`: post the RESERVE movements as local activities too, in the workflow task of the availability read
    (short, idempotent by key): the whole reservation is one action with no server round trip (a decision path)."""
    post = call_local if local else call
    out: Reserved[K] = Reserved()
    left = dict(todo)
    for attempt in range(RESERVE_ATTEMPTS):
        if not left:
            break
        out.attempts = attempt + 1
        available = await call_local(ErpActivities.get_availability, AvailabilityInput(
            skus=sorted({sku for sku, _ in left.values()}), location_ids=location_ids,
        ), summary=f"availability of {len(left)} lines")
        planned = plan(left, available)
        if not planned:
            break
        lost = False
        for location, share in sorted(planned.items()):
            step = f"reserve:{location}" + (f":{attempt}" if attempt else "")
            try:
                await post(ErpActivities.post_movement,
                           process.movement(step, MovementKind.RESERVE, lines(location, share), reason),
                           summary=f"reserve {sum(share.values())} units at {location}")
            except (ActivityError, ApplicationError) as err:  # a local activity's refusal is not wrapped
                if refusal_type(err) != ErrorType.INSUFFICIENT_STOCK:
                    raise
                process.log.warning("reservation lost a race, re-planning", location_id=location, attempt=attempt)
                lost = True
                continue
            for key, units in share.items():
                out.at.setdefault(location, {})[key] = units
                left.pop(key, None)
        if not lost:
            break
    out.unplaced = list(left)
    return out

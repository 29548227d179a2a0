"""The case register in PostgreSQL: upserts by exception_id that never regress, and the list ops read."""
from datetime import UTC, datetime, timedelta

from domain.cases import CaseSnapshot, CaseStatus, Resolution
from domain.sla import CaseKind, Severity
from persistence.cases import get_case, record
from starters.exception_cases import list_cases
from tests.support import unique

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def case(**kw: object) -> CaseSnapshot:
    key = unique("o")
    base: dict[str, object] = dict(
        exception_id=f"exception:order:web:{key}:ship_overdue", kind=CaseKind.SHIP_OVERDUE,
        status=CaseStatus.OPEN, severity=Severity.MEDIUM, business_key=f"web/{key}", channel="web",
        location_ids=["DC-EAST"], skus=["SKU-1"], summary="not dispatched in 24 h", details={"lines": "2"},
        process_workflow_id=f"order:web:{key}", process_run_id="r1", process_type="ReserveToFulfill",
        events_seen=["order.placed"], opened_at=T0, deadline=T0, breached_at=T0)
    base.update(kw)
    return CaseSnapshot(**base)  # type: ignore[arg-type]


async def test_open_escalate_resolve_and_never_back(engine):
    opened = case()
    assert await record(engine, opened)
    assert await record(engine, opened)  # a retried write is harmless
    escalated = opened.model_copy(update={"severity": Severity.HIGH, "escalations": 1,
                                          "last_escalated_at": T0 + timedelta(hours=4)})
    assert await record(engine, escalated)
    assert not await record(engine, opened)  # an older write never lowers the escalations
    got = await get_case(engine, opened.exception_id)
    assert got.escalations == 1 and got.severity == Severity.HIGH and got.events_seen == ["order.placed"]

    resolved = escalated.model_copy(update={"status": CaseStatus.RESOLVED, "resolution": Resolution(
        resolved_at=T0 + timedelta(hours=5), resolved_by="process", note="late event shipment.dispatched arrived")})
    assert await record(engine, resolved)
    assert not await record(engine, escalated)  # a resolved case never goes back to open
    got = await get_case(engine, opened.exception_id)
    assert got == resolved


async def test_list_by_status_kind_location_and_key(engine):
    a = case(location_ids=["ST-9"], opened_at=T0 - timedelta(days=2))
    b = case(kind=CaseKind.SHORT_PICK, exception_id=f"exception:{unique('x')}:short_pick", location_ids=["ST-9"])
    c = case(location_ids=["ST-9"], status=CaseStatus.RESOLVED,
             resolution=Resolution(resolved_at=T0, resolved_by="ops", note="ok"))
    for x in (a, b, c):
        await record(engine, x)
    open_here = await list_cases(engine, "open", location_id="ST-9")
    assert [x.exception_id for x in open_here] == [a.exception_id, b.exception_id]  # oldest first
    assert [x.exception_id for x in await list_cases(engine, CaseStatus.RESOLVED, location_id="ST-9")] == [
        c.exception_id]
    assert [x.kind for x in await list_cases(engine, None, location_id="ST-9", kind=CaseKind.SHORT_PICK)] == [
        CaseKind.SHORT_PICK]
    assert [x.exception_id for x in await list_cases(engine, business_key=a.business_key)] == [a.exception_id]

"""The door's own records: a source may open only so many processes without their opening event (429 beyond,
counted in PostgreSQL, freed when the opening event comes); delivery records are purged after their retention
and stale pending claims swept; a reconciliation that has not run lately is a finding on /readyz."""
import contextlib
import json
import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import event, text

from persistence.engine import create_engine
from persistence.housekeeping import sweep
from starters.api import create_app
from starters.signatures import sign_headers
from tests.support import example
from tests.support import test_settings as make_settings

SECRET = "whsec_c2VjcmV0LWZvci10ZXN0cy0wMTIzNDU2Nzg5YWJjZGVm"


def body(type_: str, **data: object) -> bytes:
    return json.dumps(example(type_, **data)).encode()


async def post(http, source: str, body: bytes, webhook_id: str | None = None) -> httpx.Response:
    headers = {**sign_headers(SECRET, webhook_id or f"msg_{uuid.uuid4().hex}", body),
               "content-type": "application/json"}
    return await http.post(f"/webhooks/{source}", content=body, headers=headers)


@pytest.fixture
async def door(dev_env, database_url):
    settings = make_settings(database_url=database_url, webhook_secrets={"wms": SECRET, "pos": SECRET},
                             unopened_process_limit=2, unopened_event_limit=3)
    engine = create_engine(database_url, pool_size=3, max_overflow=0)
    app = create_app(settings, engine=engine, client=dev_env.client)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rf") as http:
        yield http, engine, settings
    await engine.dispose()


async def waiting(engine, source: str) -> int:
    async with engine.connect() as conn:
        return await conn.scalar(text("SELECT count(*) FROM unopened_processes WHERE source = :s"), {"s": source})


async def test_a_source_opens_only_so_many_processes_without_their_opening_event(door) -> None:
    http, engine, _ = door
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM unopened_processes"))
    ids = [f"T-u-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    first_id = f"msg_{uuid.uuid4().hex}"
    assert (await post(http, "wms", body("transfer.shipped", transfer_id=ids[0]), first_id)).status_code == 202
    assert (await post(http, "wms", body("transfer.shipped", transfer_id=ids[1]))).status_code == 202
    refused = await post(http, "wms", body("transfer.shipped", transfer_id=ids[2]))
    assert refused.status_code == 429 and refused.headers["content-type"] == "application/problem+json"
    assert "never received their opening event (limit 2)" in refused.json()["detail"]
    assert refused.headers["retry-after"]
    async with engine.connect() as conn:  # the refused event started and recorded nothing
        assert not await conn.scalar(text("SELECT count(*) FROM webhook_deliveries WHERE workflow_id = :w"),
                                     {"w": f"transfer:{ids[2]}"})
    # the processes already counted still take events, and a redelivery is answered as before
    assert (await post(http, "wms", body("transfer.received", transfer_id=ids[0]))).status_code == 202
    assert (await post(http, "wms", body("transfer.shipped", transfer_id=ids[0]), first_id)).status_code == 202
    # another source has its own allowance
    assert (await post(http, "pos", body("transfer.shipped", transfer_id=ids[2]))).status_code == 202
    assert await waiting(engine, "wms") == 2 and await waiting(engine, "pos") == 1
    # the opening event frees its place
    opening = body("transfer.requested", transfer_id=ids[0])
    assert (await post(http, "wms", opening)).status_code == 202
    assert await waiting(engine, "wms") == 1
    assert (await post(http, "wms", body("transfer.shipped", transfer_id=f"T-u-{uuid.uuid4().hex[:8]}"))
            ).status_code == 202


async def test_a_process_that_never_opens_holds_only_so_many_events(door) -> None:
    """A source floods one transfer it never requests with fresh webhook-ids: past `unopened_event_limit` (3 here)
    the door answers 429 and records nothing; a redelivery is answered as before; the opening event goes in and
    the process takes events again."""
    http, engine, _ = door
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM unopened_processes"))
    t = f"T-u-{uuid.uuid4().hex[:8]}"
    first_id = f"msg_{uuid.uuid4().hex}"
    assert (await post(http, "wms", body("transfer.shipped", transfer_id=t), first_id)).status_code == 202
    for _ in range(2):
        assert (await post(http, "wms", body("transfer.received", transfer_id=t))).status_code == 202
    refused_id = f"msg_{uuid.uuid4().hex}"
    refused = await post(http, "wms", body("transfer.received", transfer_id=t), refused_id)
    assert refused.status_code == 429 and refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"].endswith("too-many-held") and refused.headers["retry-after"]
    assert "already holds 3 events (limit 3)" in refused.json()["detail"]
    async with engine.connect() as conn:  # the refused event recorded nothing
        assert not await conn.scalar(text("SELECT count(*) FROM webhook_deliveries WHERE webhook_id = :w"),
                                     {"w": refused_id})
    # a redelivery of a held event is answered as the first time; another source is held to the same count
    assert (await post(http, "wms", body("transfer.shipped", transfer_id=t), first_id)).status_code == 202
    assert (await post(http, "pos", body("transfer.received", transfer_id=t))).status_code == 429
    # the opening event is never refused; once it came, the process takes events again
    assert (await post(http, "wms", body("transfer.requested", transfer_id=t))).status_code == 202
    assert (await post(http, "wms", body("transfer.received", transfer_id=t), refused_id)).status_code == 202
    assert await waiting(engine, "wms") == 0


@contextlib.contextmanager
def statements(engine) -> Iterator[list[tuple[str, str | None]]]:
    """(first SQL word, isolation level) of every statement the engine runs meanwhile."""
    seen: list[tuple[str, str | None]] = []

    def record(conn, _cursor, statement, _parameters, _context, _many) -> None:
        seen.append((statement.split(None, 1)[0].upper(), conn.get_execution_options().get("isolation_level")))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def test_a_delivery_costs_the_door_two_statements(door) -> None:
    """The registry lookup, the unopened check and the claim are one statement; the answer (with the clearing of
    what waited for an opening event) is the other; each runs in autocommit, so no BEGIN or COMMIT either. A
    redelivery is one statement; only an event for a process nobody opened takes the locked admission path."""
    http, engine, _ = door
    t = f"T-rt-{uuid.uuid4().hex[:8]}"
    autocommit = ("WITH", "AUTOCOMMIT")
    with statements(engine) as opening:
        assert (await post(http, "wms", body("transfer.requested", transfer_id=t))).status_code == 202
    assert opening == [autocommit, autocommit]
    shipped, shipped_id = body("transfer.shipped", transfer_id=t), f"msg_{uuid.uuid4().hex}"
    with statements(engine) as advancing:
        assert (await post(http, "wms", shipped, shipped_id)).status_code == 202
    assert advancing == [autocommit, ("UPDATE", "AUTOCOMMIT")]
    with statements(engine) as again:
        assert (await post(http, "wms", shipped, shipped_id)).json()["status"] == "signalled"
    assert again == [autocommit]
    with statements(engine) as unopened:
        assert (await post(http, "wms", body("transfer.shipped", transfer_id=f"T-rt-{uuid.uuid4().hex[:8]}"))
                ).status_code == 202
    assert len(unopened) > 3 and unopened[0] == autocommit  # arrive, then unopened.admit's locked transaction


async def test_old_delivery_records_are_purged_and_stale_claims_swept(door) -> None:
    _, engine, settings = door
    rows = {"old-done": ("done", "40 days"), "recent-done": ("done", "1 day"),
            "stale-pending": ("pending", "2 hours"), "live-pending": ("pending", "1 second")}
    tag = uuid.uuid4().hex[:6]
    async with engine.begin() as conn:
        for name, (status, age) in rows.items():
            await conn.execute(text(
                "INSERT INTO webhook_deliveries (source, webhook_id, type, workflow_id, body_sha256, status, received_at) "
                f"VALUES ('web', :id, 'order.placed', 'order:web:x', 'x', :status, now() - interval '{age}')"),
                {"id": f"{tag}-{name}", "status": status})
    swept = await sweep(engine, settings.webhook_delivery_retention)
    assert swept.deliveries_purged >= 1 and swept.stale_claims_removed >= 1
    async with engine.connect() as conn:
        left = set((await conn.execute(text("SELECT webhook_id FROM webhook_deliveries WHERE webhook_id LIKE :t"),
                                       {"t": f"{tag}-%"})).scalars())
    assert left == {f"{tag}-recent-done", f"{tag}-live-pending"}


async def test_a_stale_reconciliation_is_a_finding(door) -> None:
    http, engine, _ = door
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM reconciliation_runs"))
    ready = (await http.get("/readyz")).json()
    assert ready["status"] == "ready"  # still takes events
    assert [f["finding"] for f in ready["findings"]] == ["reconciliation_stale"]
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO reconciliation_runs (run_id, workflow_id, run_at, ok, discrepancies, report) "
            "VALUES ('r1', 'reconciliation', now(), true, 0, '{}'::jsonb)"))
    assert (await http.get("/readyz")).json()["findings"] == []
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE reconciliation_runs SET run_at = now() - interval '2 hours'"))
    assert (await http.get("/readyz")).json()["findings"][0]["last_run_at"] is not None

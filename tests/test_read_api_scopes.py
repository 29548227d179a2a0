"""Read API authorization and bounds: tokens with names and scopes (a read token cannot resolve), `resolved_by`
taken from the token, a note too long is a 422 (not a 503 retried for ever), and every list cursor-paged."""
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from devtools.catalog import ITEMS, LOCATIONS
from domain.cases import CaseKind, CaseSnapshot, CaseStatus, Resolution, Severity
from persistence.cases import record
from persistence.engine import create_engine
from starters import exception_cases as exceptions
from starters.api import create_app
from tests.support import seeded
from tests.support import test_settings as make_settings

READER = "reader-token-0123456789"
OPS = "ops-token-0123456789abc"
TOKENS = {"dashboard": {"token": READER, "scopes": ["read"]}, "ops-anna": {"token": OPS, "scopes": ["read", "ops"]}}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture
async def api(database_url):
    await seeded(database_url)
    engine = create_engine(database_url, pool_size=2, max_overflow=0)
    app = create_app(make_settings(database_url=database_url, api_tokens=TOKENS), engine=engine,
                     client_provider=_no_temporal)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rf") as http:
        yield http, engine
    await engine.dispose()


async def _no_temporal():
    return object()  # the resolve below is intercepted before it would use the client


@pytest.fixture
def resolved(monkeypatch):
    """What `resolve_case` was asked (the case workflow itself is tested in test_exception_case.py)."""
    calls = []

    async def fake(client, exception_id, request):
        calls.append((exception_id, request))
        return CaseSnapshot(exception_id=exception_id, kind=CaseKind.PICK_OVERDUE, status=CaseStatus.RESOLVED,
                            severity=Severity.LOW, business_key=exception_id, summary="late",
                            process_workflow_id="order:web:x", process_run_id="r", opened_at=datetime.now(UTC),
                            resolution=Resolution(resolved_at=datetime.now(UTC), resolved_by=request.resolved_by,
                                                  note=request.note))

    monkeypatch.setattr(exceptions, "resolve_case", fake)
    return calls


async def test_a_read_token_reads_but_cannot_resolve(api, resolved) -> None:
    http, _ = api
    assert (await http.get("/items", headers=bearer(READER))).status_code == 200
    refused = await http.post("/exceptions/exception:x:pick_overdue/resolve", json={"note": "done"},
                              headers=bearer(READER))
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
    assert "lacks the 'ops' scope" in refused.json()["detail"]
    assert resolved == []  # nothing reached the case
    assert (await http.post("/exceptions/x/resolve", json={"note": "done"})).status_code == 401


async def test_resolved_by_is_the_tokens_name_whatever_the_body_says(api, resolved) -> None:
    http, _ = api
    answer = await http.post("/exceptions/exception:x:pick_overdue/resolve",
                             json={"note": "called the store", "resolved_by": "process"}, headers=bearer(OPS))
    assert answer.status_code == 200, answer.text
    assert [(i, r.resolved_by, r.note) for i, r in resolved] == [
        ("exception:x:pick_overdue", "ops-anna", "called the store")]


async def test_a_note_over_the_limit_is_422_and_reaches_nothing(api, resolved) -> None:
    http, _ = api
    for note in ("x" * 2001, "x" * 2_000_000, ""):
        answer = await http.post("/exceptions/x/resolve", json={"note": note}, headers=bearer(OPS))
        assert answer.status_code in (413, 422), answer.status_code  # 2 MB is over the body limit first
    assert resolved == []


async def _walk(http, path: str, key, **params) -> list:
    seen, cursor, pages = [], None, 0
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        answer = await http.get(path, params=query, headers=bearer(READER))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        rows = body["cases"] if isinstance(body, dict) else body
        seen += [key(r) for r in rows]
        pages += 1
        link = answer.headers.get("link")
        if isinstance(body, dict):
            assert (body["next_cursor"] is None) == (link is None)
        if not link:
            return seen
        cursor = httpx.URL(link.split(";")[0].strip("<>")).params["cursor"]
        assert len(rows) == params["limit"] and pages < 100


async def test_every_list_is_cursor_paged(api) -> None:
    http, engine = api
    skus = await _walk(http, "/items", lambda r: r["sku"], limit=7)
    assert skus == sorted(i.sku for i in ITEMS)
    locations = await _walk(http, "/locations", lambda r: r["location_id"], limit=2)
    assert locations == sorted(loc.location_id for loc in LOCATIONS)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    ids = [f"exception:order:web:P{uuid.uuid4().hex[:8]}:pick_overdue" for _ in range(11)]
    for n, exception_id in enumerate(ids):
        await record(engine, CaseSnapshot(
            exception_id=exception_id, kind=CaseKind.PICK_OVERDUE, status=CaseStatus.OPEN, severity=Severity.LOW,
            business_key=exception_id, summary="late", process_workflow_id="order:web:x", process_run_id="r",
            opened_at=t0 + timedelta(minutes=n // 2)))  # pairs opened at the same moment: the ID breaks the tie
    cases = await _walk(http, "/exceptions", lambda r: r["exception_id"], limit=3, status="open")
    assert [c for c in cases if c in ids] == sorted(ids, key=lambda i: (ids.index(i) // 2, i))
    assert (await http.get("/items", params={"limit": 501}, headers=bearer(READER))).status_code == 422
    assert (await http.get("/items", params={"cursor": "not-ours"}, headers=bearer(READER))).status_code == 422


def test_the_legacy_token_list_still_works_with_both_scopes() -> None:
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        legacy = make_settings(api_tokens=[READER, OPS])
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)
    assert {n: (t.token.get_secret_value(), set(t.scopes)) for n, t in legacy.api_tokens.items()} == {
        "token-1": (READER, {"read", "ops"}), "token-2": (OPS, {"read", "ops"})}
    assert make_settings(api_tokens=[]).api_tokens == {}

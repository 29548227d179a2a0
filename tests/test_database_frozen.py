"""Bounded time on every database call, against a frozen PostgreSQL: a PostgreSQL of this test's own, every
process of it stopped with SIGSTOP (it accepts nothing and answers nothing, like a blackholed host). A webhook
answers 503 + Retry-After within the bound instead of hanging, /readyz says the database is down, nothing is
recorded, and once it is thawed (SIGCONT) the same pool serves again."""
import asyncio
import json
import os
import signal
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from devtools.embedded_postgres import EmbeddedPostgres
from persistence.engine import create_engine
from persistence.migrations import upgrade
from starters.api import create_app
from starters.signatures import sign_headers
from tests.support import test_settings as make_settings

pytestmark = pytest.mark.stack

SECRET = "whsec_c2VjcmV0LWZvci10ZXN0cy0wMTIzNDU2Nzg5YWJjZGVm"
BOUND = 2.0  # seconds: the statement timeout this test configures
EXAMPLE = json.loads((Path(__file__).resolve().parents[1] / "examples" / "order_placed.json").read_text())


def signal_server(pid: int, sig: int) -> None:
    """Signal the postmaster and every process it forked (each backend is its own process group)."""
    targets = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:  # field 4: the parent's pid
                targets.append(int(entry.name))
    for target in targets:
        try:
            os.kill(target, sig)
        except ProcessLookupError:
            pass


class FakeClient:
    """Never reached: the delivery stops at its database claim."""


async def _client():
    return FakeClient()


@pytest.fixture
async def frozen_capable():
    pg = EmbeddedPostgres(tempfile.mkdtemp(prefix="retailflow-frozen-"))
    url = await asyncio.to_thread(pg.start)
    await upgrade(url)
    engine = create_engine(url, pool_size=2, max_overflow=0, statement_timeout=BOUND, pool_timeout=BOUND,
                           connect_timeout=BOUND)
    try:
        yield pg, engine
    finally:
        signal_server(pg.process.pid, signal.SIGCONT)
        await engine.dispose()
        await asyncio.to_thread(pg.destroy)


async def test_a_frozen_database_is_a_bounded_503_and_nothing_is_recorded(frozen_capable) -> None:
    pg, engine = frozen_capable
    settings = make_settings(database_url="postgresql+asyncpg://unused", webhook_secrets={"web": SECRET},
                             database_statement_timeout=timedelta(seconds=BOUND))
    app = create_app(settings, engine=engine, client_provider=_client)
    body = json.dumps({**EXAMPLE, "data": {**EXAMPLE["data"], "order_id": f"F-{uuid.uuid4().hex[:8]}"}}).encode()
    webhook_id = f"frozen_{uuid.uuid4().hex}"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rf", timeout=60) as http:
        async with engine.connect() as conn:  # the pool holds a live connection when the freeze comes
            await conn.execute(text("SELECT 1"))
        signal_server(pg.process.pid, signal.SIGSTOP)  # the postmaster and every backend
        try:
            begun = time.monotonic()
            answer = await http.post("/webhooks/web", content=body,
                                     headers={**sign_headers(SECRET, webhook_id, body), "content-type": "application/json"})
            seconds = time.monotonic() - begun
            assert answer.status_code == 503 and answer.headers["retry-after"], answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            assert "database" in answer.json()["detail"]
            assert seconds < 3 * BOUND, seconds  # bounded, not the minutes a hung claim used to take
            ready = await http.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["database"] is False
        finally:
            signal_server(pg.process.pid, signal.SIGCONT)
        await asyncio.sleep(0.5)
        async with engine.connect() as conn:  # thawed: the pool heals (pre-ping drops the broken connection)
            rows = await conn.scalar(text("SELECT count(*) FROM webhook_deliveries WHERE webhook_id = :id"),
                                     {"id": webhook_id})
        assert rows == 0  # nothing was recorded for the 503


async def test_a_locked_row_is_a_bounded_wait_not_a_hang(frozen_capable) -> None:
    """A statement blocked behind another transaction's lock ends at lock_timeout / statement_timeout."""
    _, engine = frozen_capable
    async with engine.connect() as holder:
        await holder.execute(text("BEGIN"))
        await holder.execute(text("LOCK TABLE webhook_deliveries IN ACCESS EXCLUSIVE MODE"))
        begun = time.monotonic()
        with pytest.raises(Exception) as failed:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT count(*) FROM webhook_deliveries"))
        assert time.monotonic() - begun < 3 * BOUND
        assert "timeout" in str(failed.value).lower() or "cancel" in str(failed.value).lower()
        await holder.execute(text("ROLLBACK"))

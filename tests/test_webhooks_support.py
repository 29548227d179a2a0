"""Helpers shared by the webhook and read API tests (no tests here)."""
import uuid
from collections.abc import AsyncIterator


async def migrated(postgres_server_url: str, revision: str = "head") -> AsyncIterator[str]:
    """A fresh database migrated to `revision` (the conftest's `database_url`, with a chosen revision)."""
    import asyncpg

    from activities.db.migrations import upgrade

    server = postgres_server_url.replace("postgresql+asyncpg://", "postgresql://")
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base, _, _ = postgres_server_url.rpartition("/")
    url = f"{base}/{name}"
    await upgrade(url, revision)
    yield url

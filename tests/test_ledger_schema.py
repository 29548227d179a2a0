"""The SQLModel classes map exactly what the alembic revision creates: same tables, same columns, same
nullability (the CHECKs, triggers and indexes live in the migration alone)."""
from sqlalchemy import inspect

from persistence.engine import create_engine
from persistence.migrations import current
from persistence.models import LEDGER_TABLES


def _columns(connection) -> dict[str, dict[str, bool]]:  # noqa: ANN001
    inspector = inspect(connection)
    return {t.name: {c["name"]: c["nullable"] for c in inspector.get_columns(t.name)} for t in LEDGER_TABLES}


async def test_models_match_the_migrated_schema(database_url: str) -> None:
    assert await current(database_url) is not None
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            database = await conn.run_sync(_columns)
    finally:
        await engine.dispose()
    models = {t.name: {c.name: bool(c.nullable) for c in t.columns} for t in LEDGER_TABLES}
    assert models == database

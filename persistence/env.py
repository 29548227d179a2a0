"""Alembic environment, run through persistence.migrations (a connection from the async engine) or the `alembic`
command line with RETAILFLOW_DATABASE_URL set. The ORM rows are the target metadata, so autogenerate compares
them with the database (tests/test_schema_models.py)."""
import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from persistence.engine import create_engine
from persistence.models import METADATA, include_object

config = context.config


def _migrate(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=METADATA, include_object=include_object,
                      transaction_per_migration=False)
    with context.begin_transaction():
        context.run_migrations()


async def _online_async() -> None:
    url = config.get_main_option("sqlalchemy.url") or os.environ["RETAILFLOW_DATABASE_URL"]
    engine = create_engine(url, pool_size=1, max_overflow=0, statement_timeout=None)
    async with engine.connect() as conn:
        await conn.run_sync(_migrate)
        await conn.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=METADATA,
                      include_object=include_object, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (shared := config.attributes.get("connection")) is not None:
    _migrate(shared)
else:
    asyncio.run(_online_async())

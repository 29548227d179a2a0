"""Alembic environment. Run through persistence.migrations (which hands over a connection from the async
engine); the `alembic` command line also works with RETAILFLOW_DATABASE_URL set, running async via asyncpg."""
import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

config = context.config


def _migrate(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=False)
    with context.begin_transaction():
        context.run_migrations()


async def _online_async() -> None:
    from persistence.engine import create_engine

    url = config.get_main_option("sqlalchemy.url") or os.environ["RETAILFLOW_DATABASE_URL"]
    engine = create_engine(url, pool_size=1, max_overflow=0, statement_timeout=None)
    async with engine.connect() as conn:
        await conn.run_sync(_migrate)
        await conn.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (shared := config.attributes.get("connection")) is not None:
    _migrate(shared)
else:
    asyncio.run(_online_async())

"""The one way to get a database engine: SQLAlchemy async on asyncpg, a bounded pool and every call bounded in
time, so a locked or unreachable database fails fast (docs/persistence.md)."""
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

STATEMENT_TIMEOUT = 10.0  # seconds; the activities' start-to-close is 30 s
POOL_TIMEOUT = 5.0
CONNECT_TIMEOUT = 5.0
LOCK_TIMEOUT = 5.0
IDLE_IN_TRANSACTION_TIMEOUT = 60.0


def asyncpg_url(url: str) -> str:
    """Accept `postgresql://` and `postgres://` too, as operators tend to paste those."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix):]
    return url


def _ms(seconds: float | None) -> str:
    return "0" if not seconds else str(int(seconds * 1000))


def create_engine(url: str, *, pool_size: int = 10, max_overflow: int = 20, echo: bool = False,
                  statement_timeout: float | None = STATEMENT_TIMEOUT, pool_timeout: float = POOL_TIMEOUT,
                  connect_timeout: float = CONNECT_TIMEOUT) -> AsyncEngine:
    server_settings = {
        "statement_timeout": _ms(statement_timeout),
        "lock_timeout": _ms(LOCK_TIMEOUT if statement_timeout else None),
        "idle_in_transaction_session_timeout": _ms(IDLE_IN_TRANSACTION_TIMEOUT),
        "application_name": "retailflow",
    }
    return create_async_engine(
        asyncpg_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=False,  # no round trip per checkout: a dead connection fails its statement, the pool is
        # invalidated, and the activity attempt (or the door's 503 + Retry-After) is retried
        pool_recycle=1800,
        pool_timeout=pool_timeout,
        echo=echo,
        connect_args={
            "timeout": connect_timeout,
            # the client's own bound, a little past the server's: it ends a call the server never answers
            "command_timeout": statement_timeout + 2.0 if statement_timeout else None,
            "server_settings": server_settings,
        },
    )


@asynccontextmanager
async def autocommit(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A pooled connection on which each statement is its own transaction: no BEGIN before it and no COMMIT or
    ROLLBACK after it, so one statement is one round trip. For reads, and for writes done in one statement
    (a write-once insert); work of several statements that must commit together takes `engine.begin()`."""
    async with engine.connect() as conn:
        yield await conn.execution_options(isolation_level="AUTOCOMMIT")

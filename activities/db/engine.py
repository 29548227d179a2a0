"""The one way to get a database engine: SQLAlchemy async on asyncpg, with a pool sized for a worker.

Activities run concurrently (up to `max_concurrent_activities`), so the pool is bounded and callers queue for a
connection instead of opening hundreds; `pool_pre_ping` lets a restarted PostgreSQL heal without a worker restart.
"""
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def asyncpg_url(url: str) -> str:
    """Accept `postgresql://` and `postgres://` too, as operators tend to paste those."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix):]
    return url


def create_engine(url: str, *, pool_size: int = 10, max_overflow: int = 20, echo: bool = False) -> AsyncEngine:
    return create_async_engine(
        asyncpg_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        pool_recycle=1800,
        pool_timeout=60,
        echo=echo,
    )

"""Schema migrations (alembic), run from code: the tests, `retailflow dev` and the worker call `upgrade(url)`.

The alembic script folder is this package (env.py, versions/), so migrations work from an installed wheel as
well as from a checkout. An advisory lock serialises concurrent upgraders (several workers starting at once).
"""
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from persistence.engine import create_engine

SCRIPT_LOCATION = Path(__file__).resolve().parent
_LOCK_ID = 0x72_66_6C_77  # "rflw": one advisory lock id for schema upgrades


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    cfg.set_main_option("version_locations", str(SCRIPT_LOCATION / "versions"))
    return cfg


async def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at `url` to `revision` (default: the newest)."""
    engine = create_engine(url, pool_size=1, max_overflow=0, statement_timeout=None)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
            await conn.run_sync(_run, "upgrade", revision)
    finally:
        await engine.dispose()


async def current(url: str) -> str | None:
    """The revision the database is at (None: not migrated)."""
    engine = create_engine(url, pool_size=1, max_overflow=0, statement_timeout=None)
    try:
        async with engine.connect() as conn:
            exists = await conn.scalar(text("SELECT to_regclass('alembic_version') IS NOT NULL"))
            if not exists:
                return None
            return await conn.scalar(text("SELECT version_num FROM alembic_version"))
    finally:
        await engine.dispose()


def _run(connection, action: str, revision: str) -> None:  # noqa: ANN001 - a sync Connection from run_sync
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    getattr(command, action)(cfg, revision)

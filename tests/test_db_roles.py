"""The PostgreSQL roles of docker-compose.yml, for real: deploy/postgres/10-roles.sh's SQL run on the test
server (names made unique), the schema migrated as the owner role, then the app role tried: it reads and writes
rows, and cannot disable or alter the ledger's triggers, change the schema, or rewrite the append-only ledger."""
import re
import uuid
from pathlib import Path

import asyncpg
import pytest

from devtools.seed import seed
from persistence.migrations import upgrade

SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "postgres" / "10-roles.sh"


def roles_sql(suffix: str, passwords: dict[str, str]) -> tuple[str, str]:
    """The script's SQL, as (on the server, in the new database), with unique names and literal passwords."""
    sql = re.search(r"<<'SQL'\n(.*?)\nSQL\n", SCRIPT.read_text(), re.S).group(1)
    for name in ("retailflow_owner", "retailflow_app", "temporal_visibility"):
        sql = sql.replace(name, f"{name}_{suffix}")
    sql = re.sub(r"\bretailflow\b", f"retailflow_{suffix}", sql)
    sql = re.sub(r"\btemporal\b(?!_)", f"temporal_{suffix}", sql)
    for var, value in passwords.items():
        sql = sql.replace(f":'{var}'", f"'{value}'")
    server, _, database = sql.partition(f"\\connect retailflow_{suffix}")
    return server, database


async def test_the_app_role_cannot_touch_the_ledgers_guards(postgres_server_url: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    pw = {"owner_pw": f"o-{suffix}", "app_pw": f"a-{suffix}", "temporal_pw": f"t-{suffix}"}
    server_sql, database_sql = roles_sql(suffix, pw)
    admin_url = postgres_server_url.replace("postgresql+asyncpg://", "postgresql://")
    base, _, _ = admin_url.rpartition("/")
    admin = await asyncpg.connect(admin_url)
    if not await admin.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
        await admin.close()
        pytest.skip("needs a superuser connection (a given RETAILFLOW_DATABASE_URL may not be one)")
    try:
        for statement in filter(str.strip, server_sql.split(";")):
            await admin.execute(statement)
        db = await asyncpg.connect(f"{base}/retailflow_{suffix}")
        try:
            for statement in filter(str.strip, database_sql.split(";")):
                await db.execute(statement)
        finally:
            await db.close()
        host = base.rpartition("@")[2]
        owner_url = f"postgresql+asyncpg://retailflow_owner_{suffix}:{pw['owner_pw']}@{host}/retailflow_{suffix}"
        await upgrade(owner_url)
        await seed(owner_url, migrate=False)  # opening stock: movements to protect
        app = await asyncpg.connect(f"postgresql://retailflow_app_{suffix}:{pw['app_pw']}@{host}/retailflow_{suffix}")
        try:
            assert await app.fetchval("SELECT count(*) FROM movements") > 0  # reads
            await app.execute("INSERT INTO locations (location_id, name, kind, legal_entity) "
                              "VALUES ('X', 'x', 'store', 'E')")  # writes rows
            for ddl in ("ALTER TABLE movements DISABLE TRIGGER ALL",
                        "ALTER TABLE movements DISABLE TRIGGER movements_append_only",
                        "DROP TRIGGER movements_append_only ON movements",
                        "ALTER TABLE balances DROP CONSTRAINT balances_quantity_not_negative",
                        "CREATE TABLE sneaky (x int)",
                        "SET session_replication_role = replica",
                        "TRUNCATE movements"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await app.execute(ddl)
            for dml in ("DELETE FROM movements", "UPDATE journal_lines SET debit = debit + 1"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):  # the append-only trigger (42501)
                    await app.execute(dml)
        finally:
            await app.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "retailflow_{suffix}" WITH (FORCE)')
        for db in (f"temporal_{suffix}", f"temporal_visibility_{suffix}"):
            await admin.execute(f'DROP DATABASE IF EXISTS "{db}"')
        for role in (f"retailflow_app_{suffix}", f"retailflow_owner_{suffix}", f"temporal_{suffix}"):
            await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()

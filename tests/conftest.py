"""Shared test environments: one event loop, one Temporal server of each kind, one PostgreSQL per session.

Each test module gets a fresh database (`database_url`), migrated to head. Workers are built inline in the
tests (see tests/support.py), as the Temporal samples do.
"""
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tests.support import (
    create_database,
    register_search_attributes,
    search_attribute_keys,
    temporal_cli,
    temporal_test_server,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """RETAILFLOW_DATABASE_URL when given (CI with its own PostgreSQL), else an embedded one."""
    given = os.environ.get("RETAILFLOW_DATABASE_URL")
    if given:
        yield given
        return
    from devtools.embedded_postgres import EmbeddedPostgres

    pg = EmbeddedPostgres(tempfile.mkdtemp(prefix="retailflow-pg-"))
    try:
        yield pg.start()
    finally:
        pg.destroy()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def database_url(postgres_server_url: str) -> AsyncIterator[str]:
    """A fresh database for one test module, with the schema migrated to head."""
    from persistence.migrations import upgrade

    url = await create_database(postgres_server_url)
    await upgrade(url)
    yield url


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def engine(database_url: str) -> AsyncIterator["AsyncEngine"]:
    """A connection pool on the module's database, as the worker's activities use it."""
    from persistence.engine import create_engine

    pool = create_engine(database_url)
    yield pool
    await pool.dispose()


async def _time_skipping_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=temporal_test_server()
    )
    await register_search_attributes(env.client)  # processes upsert them; the test server must know them
    try:
        yield env
    finally:
        await env.shutdown()


@pytest_asyncio.fixture(loop_scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of the test's own (it starts in about a second). A workflow left behind with a
    timer and no worker (an open exception case that escalates, say) holds the server's clock when time skips,
    so sharing one server lets one test stall the next."""
    async for env in _time_skipping_server():
        yield env


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def module_time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """One time-skipping server for a module that keeps one worker polling for all its tests (so every timer
    that fires when time skips has a worker to run it)."""
    async for env in _time_skipping_server():
        yield env


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """A local dev server (update-with-start, user metadata) with the contract's search attributes."""
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=temporal_cli(),
        search_attributes=search_attribute_keys(),
        ui=False,
        dev_server_extra_args=["--dynamic-config-value", "frontend.enableUpdateWorkflowExecution=true"],
    )
    try:
        yield env
    finally:
        await env.shutdown()


SERVER_FIXTURES = {"postgres_server_url", "database_url", "time_skipping_env", "module_time_skipping_env", "dev_env"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`-m unit` selects the fast tests: those marked `unit`, and every test that needs no server (none of the
    fixtures above, directly or through another fixture) unless it is marked `stack`, `faults` or `slow`."""
    for item in items:
        if item.get_closest_marker("unit") or any(item.get_closest_marker(m) for m in ("stack", "faults", "slow")):
            continue
        if not SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.unit)

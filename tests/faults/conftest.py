"""One real stack (Temporal dev server with its SQLite file, embedded PostgreSQL, `retailflow worker`,
`retailflow api`, each its own process) shared by the scenarios of a run; each scenario leaves it running."""
import signal
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from starters.dev import DevStack
from tests.faults.driver import start_stack


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DevStack]:
    s = await start_stack(tmp_path_factory.mktemp("faults"))
    try:
        yield s
    finally:
        await s.stop()
        for part in s.parts.values():  # nothing of ours may outlive the stack
            if part.process is not None and part.process.poll() is None:
                part.process.send_signal(signal.SIGKILL)

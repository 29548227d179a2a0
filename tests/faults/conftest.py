"""One real stack (Temporal dev server with its SQLite file, embedded PostgreSQL, `retailflow worker`,
`retailflow api`, each its own process) shared by the scenarios of a run; each scenario leaves it running."""
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from devtools.stack import DevStack
from tests.faults.driver import start_stack


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stack() -> AsyncIterator[DevStack]:
    # Not under pytest's basetemp: a concurrent pytest run prunes old basetemps, data folder and all, under a
    # running PostgreSQL. Kept after the run when RETAILFLOW_FAULTS_KEEP=1 (to read the logs and histories).
    data_dir = Path(tempfile.mkdtemp(prefix="retailflow-faults-"))
    print(f"fault suite stack data and logs: {data_dir}")
    s = await start_stack(data_dir)
    try:
        yield s
    finally:
        await s.stop()
        for part in s.parts.values():  # nothing of ours may outlive the stack
            if part.process is not None and part.process.poll() is None:
                part.process.send_signal(signal.SIGKILL)
        if os.environ.get("RETAILFLOW_FAULTS_KEEP") != "1":
            shutil.rmtree(data_dir, ignore_errors=True)

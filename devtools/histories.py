"""Workflow histories for developers: export real runs from a server, replay them against today's code.

`retailflow histories export WORKFLOW_ID...` writes each run's history to `tests/histories/<type>/<id>.json`;
`retailflow replay [PATH]` and `tests/test_replay.py` replay every file with the worker's own workflow list,
sandbox and data converter, so a change to a workflow that would break a run in flight fails before it ships.
"""
import json
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

HISTORIES = Path(__file__).resolve().parent.parent / "tests" / "histories"


def file_name(workflow_id: str) -> str:
    """`order:web:1042` -> `order~web~1042.json` (colons are awkward in file names on some systems)."""
    return workflow_id.replace(":", "~").replace("/", "_") + ".json"


def workflow_id_of(path: Path) -> str:
    return path.stem.replace("~", ":")


async def export(client: Client, workflow_ids: list[str], dest: Path = HISTORIES) -> list[Path]:
    """Fetch each workflow's latest run history into `dest/<WorkflowType>/`."""
    written = []
    for workflow_id in workflow_ids:
        handle = client.get_workflow_handle(workflow_id)
        description = await handle.describe()
        history = await handle.fetch_history()
        folder = dest / description.workflow_type
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / file_name(workflow_id)
        path.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
        written.append(path)
    return written


def history_files(path: Path = HISTORIES) -> list[Path]:
    return [path] if path.is_file() else sorted(path.rglob("*.json"))


@dataclass
class ReplayOutcome:
    path: Path
    error: str | None


def replayer(*also: type) -> Replayer:
    """Exactly what a worker runs: the registry's workflows (and `also`, a test's own), the worker's sandbox and the
    pydantic converter."""
    from worker.factory import workflow_runner
    from worker.registry import WORKFLOWS

    return Replayer(workflows=[*WORKFLOWS, *also], data_converter=pydantic_data_converter,
                    workflow_runner=workflow_runner())


async def replay(paths: list[Path], *, replay_with: Replayer | None = None) -> list[ReplayOutcome]:
    """Replay every history; a nondeterminism (or any workflow task failure) is reported per file."""
    r = replay_with or replayer()
    outcomes = []
    for path in paths:
        history = WorkflowHistory.from_json(workflow_id_of(path), path.read_text())
        result = await r.replay_workflow(history, raise_on_replay_failure=False)
        failure = result.replay_failure
        outcomes.append(ReplayOutcome(path, None if failure is None else f"{type(failure).__name__}: {failure}"))
    return outcomes

"""`retailflow dev` / DevStack: every part up, search attributes registered, single parts killed and restarted,
a second stack refused, a failing part named, and nothing left running afterwards.

Each stack runs on free ports and a temporary data folder, so it never collides with a developer's stack.
The HTTP service part runs when `starters/api.py` exists.
"""
import asyncio
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from activities.checker import check
from client.names import SEARCH_ATTRIBUTES
from config.settings import Settings
from devtools.embedded_postgres import free_port
from devtools.stack import PARTS, AlreadyRunning, DevStack, PartFailed, settings_env
from persistence.migrations import current
from tests.support import assert_checker_ok, eventually, temporal_cli

pytestmark = pytest.mark.stack

HAS_API = importlib.util.find_spec("starters.api") is not None
STACK_PARTS = PARTS if HAS_API else tuple(p for p in PARTS if p != "api")


def stack_settings(data_dir: Path, **overrides: object) -> Settings:
    return Settings(data_dir=data_dir, temporal_address=f"127.0.0.1:{free_port()}",
                    temporal_ui_port=free_port(), http_port=free_port(), **overrides)  # type: ignore[arg-type]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie (exited, not yet reaped by its parent) counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(tmp_path_factory):
    s = stack_settings(tmp_path_factory.mktemp("dev"))
    begun = time.monotonic()
    stack = DevStack(s, parts=STACK_PARTS, postgres_port=free_port())
    await stack.start()
    stack.startup_seconds = time.monotonic() - begun  # type: ignore[attr-defined]
    try:
        yield stack
    finally:
        pids = [p.pid for p in stack.parts.values() if p.pid]
        await stack.stop()
        assert all(gone(pid) for pid in pids), "a part outlived the stack"


async def test_every_part_is_up(stack):
    # the start-up time is measured (bench/RESULTS.md), not asserted: a shared machine would make it flaky
    print(f"dev stack up in {stack.startup_seconds:.1f}s")
    assert all(part.alive() for part in stack.parts.values())
    assert stack.crashed() is None
    state = (stack.data_dir / "dev.json").read_text()
    assert stack.database_url in state and stack.temporal_address in state


async def test_search_attributes_of_the_contract_are_registered(stack):
    cmd = [temporal_cli(), "operator", "search-attribute", "list", "--address", stack.temporal_address,
           "--output", "json"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)  # noqa: ASYNC221
    for name, kind in SEARCH_ATTRIBUTES.items():
        assert name in out.stdout, f"{name} ({kind}) not registered"


async def test_the_namespace_retention_is_set_explicitly(stack):
    cmd = [temporal_cli(), "operator", "namespace", "describe", "--address", stack.temporal_address,
           "--namespace", "default", "--output", "json"]
    out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)  # noqa: ASYNC221
    assert out["config"]["workflowExecutionRetentionTtl"] == "2592000s"  # RETAILFLOW_NAMESPACE_RETENTION: 30 days


async def test_database_is_migrated_and_seeded(stack):
    assert await current(stack.database_url) is not None
    report = await assert_checker_ok(stack.database_url)
    assert report.totals["items"] > 0 and report.totals["movements"] > 0


@pytest.mark.skipif(not HAS_API, reason="starters/api.py not there yet")
async def test_readyz_answers_200(stack):
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{stack.api_url}/readyz")).status_code == 200
        assert (await http.get(f"{stack.api_url}/healthz")).status_code == 200


async def test_children_get_the_resolved_settings(stack):
    env = settings_env(stack.settings)
    for key, value in env.items():
        os.environ[key] = value
    try:
        child = Settings()
    finally:
        for key in env:
            os.environ.pop(key, None)
    assert child.database_url == stack.database_url
    assert child.temporal_address == stack.temporal_address
    assert child.secrets_for("web") == stack.settings.secrets_for("web") != []
    assert {n: (t.token.get_secret_value(), t.scopes) for n, t in child.api_tokens.items()} == {
        n: (t.token.get_secret_value(), t.scopes) for n, t in stack.settings.api_tokens.items()}
    assert stack.api_token in [t.token.get_secret_value() for t in child.api_tokens.values()]
    assert child.sla == stack.settings.sla and child.exception_escalate_every == stack.settings.exception_escalate_every


async def test_a_second_stack_on_the_same_folder_is_refused(stack):
    second = DevStack(stack.settings, parts=("temporal",))
    with pytest.raises(AlreadyRunning) as refused:
        await second.start()
    assert str(os.getpid()) in str(refused.value)
    assert stack.parts["temporal"].alive()


async def test_a_crashed_worker_is_seen_and_restarted(stack):
    worker = stack.parts["worker"]
    old = worker.pid
    os.kill(old, signal.SIGKILL)  # a crash, not a stop through the stack
    found = await asyncio.wait_for(stack.watch(interval=0.1), 10)
    assert found == ("worker", -signal.SIGKILL)
    await stack.restart("worker")
    assert worker.alive() and worker.pid != old and stack.crashed() is None


async def test_temporal_restart_keeps_runs_and_attributes(stack):
    client = await Client.connect(stack.temporal_address)
    workflow_id = f"persist-{time.time_ns()}"
    # by name: a run of a type no worker knows, on a queue nobody polls, stays as it was started
    await client.start_workflow("NoSuchWorkflow", id=workflow_id, task_queue="nobody-polls-this")
    await stack.kill("temporal", signal.SIGKILL)
    await stack.restart("temporal")
    client = await Client.connect(stack.temporal_address)
    description = await client.get_workflow_handle(workflow_id).describe()
    assert description.workflow_type == "NoSuchWorkflow"
    # the worker reconnects by itself: it polls again without a restart
    prefix = f"{stack.parts['worker'].pid}@"
    request = DescribeTaskQueueRequest(namespace="default", task_queue=TaskQueue(name=stack.settings.task_queue),
                                       task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW)
    await eventually(lambda: client.workflow_service.describe_task_queue(request),
                     lambda d: any(p.identity.startswith(prefix) for p in d.pollers),
                     what="the worker polls again after Temporal restarted", within=60, every=0.5)
    assert stack.parts["worker"].alive()


async def test_postgres_restart_keeps_data_on_the_same_port(stack):
    url = stack.database_url
    before = (await check(url)).totals
    await stack.kill("postgres", signal.SIGKILL)
    await stack.restart("postgres")
    assert stack.database_url == url
    assert (await check(url)).totals == before


async def test_a_part_that_cannot_start_stops_the_rest_and_is_named(tmp_path):
    s = stack_settings(tmp_path / "busy")
    host, port = s.temporal_address.rsplit(":", 1)
    blocker = socket.socket()
    blocker.bind((host, int(port)))
    blocker.listen()
    stack = DevStack(s, parts=("postgres", "temporal"), postgres_port=free_port())
    try:
        with pytest.raises(PartFailed) as failed:
            await stack.start()
    finally:
        blocker.close()
    assert failed.value.part == "temporal" and "already in use" in failed.value.reason
    assert all(not part.alive() for part in stack.parts.values())
    assert not (s.data_dir.resolve() / "dev.json").exists()


async def test_a_part_that_dies_while_starting_is_named_with_its_log(tmp_path):
    s = stack_settings(tmp_path / "broken")
    (s.data_dir / "temporal.db").mkdir(parents=True)  # Temporal cannot open its SQLite file: it exits
    stack = DevStack(s, parts=("temporal",), start_timeout=30)
    with pytest.raises(PartFailed) as failed:
        await stack.start()
    assert failed.value.part == "temporal" and "exited with code" in failed.value.reason
    assert "temporal.log" in failed.value.reason
    assert not stack.parts["temporal"].alive()


def test_retailflow_dev_cli_starts_refuses_a_second_and_stops_on_ctrl_c(tmp_path):
    """The command itself: banner, a second `retailflow dev` refused plainly, SIGINT -> exit 0, no orphans."""
    s = stack_settings(tmp_path / "cli")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETAILFLOW_")}
    env.update({"RETAILFLOW_DATA_DIR": str(s.data_dir), "RETAILFLOW_TEMPORAL_ADDRESS": s.temporal_address,
                "RETAILFLOW_TEMPORAL_UI_PORT": str(s.temporal_ui_port), "RETAILFLOW_HTTP_PORT": str(s.http_port),
                "RETAILFLOW_DEV_POSTGRES_PORT": str(free_port()), "PYTHONUNBUFFERED": "1"})
    skip = [] if HAS_API else ["--skip", "api"]
    cmd = [sys.executable, "-m", "devtools.cli", "dev", *skip]
    log = tmp_path / "dev.out"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 90
            while "Ctrl-C stops everything" not in log.read_text():
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.3)
            text = log.read_text()
            assert "Temporal UI" in text and "Webhook secrets" in text and "whsec_" in text
            if HAS_API:
                assert "Bearer retailflow-dev-token" in text

            second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
            assert second.returncode == 2
            assert "already running" in second.stderr and str(proc.pid) in second.stderr

            import json

            state = json.loads((s.data_dir / "dev.json").read_text())
            pids = [pid for pid in state["parts"].values() if pid]
            assert len(pids) == len(STACK_PARTS)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(60) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
    assert "stopped." in log.read_text()
    assert all(gone(pid) for pid in pids), "a part outlived `retailflow dev`"


async def test_the_worker_and_the_api_run_without_pythondontwritebytecode(stack):
    """They write and reuse .pyc files (issue 19); /proc/<pid>/environ is what each child was started with."""
    for name in ("worker", "api"):
        if name in stack.parts:
            environ = Path(f"/proc/{stack.parts[name].pid}/environ").read_bytes().split(b"\0")  # noqa: ASYNC240
            assert not [v for v in environ if v.startswith(b"PYTHONDONTWRITEBYTECODE=")], name

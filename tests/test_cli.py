"""The `retailflow` CLI: every contract command exists and does what it says (exception cases listed from the
register and resolved through their workflow, seed, check, status), clear messages instead of tracebacks, and the
worker process runs against a real server, serves metrics and exits 0 on SIGTERM."""
import asyncio
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime

import httpx
import pytest
import typer.main
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.worker import Worker
from typer.testing import CliRunner

from activities.cases import CaseActivities
from devtools.cli import main
from devtools.embedded_postgres import free_port
from domain.cases import CaseSnapshot, CaseStatus, ExceptionCaseInput, Lineage, Resolution
from domain.sla import CaseKind, Severity
from persistence.cases import record
from tests.sla_probe import ProcessStandIn
from tests.support import eventually, terminate_open_cases, unique
from worker.factory import workflow_runner
from worker.registry import activity_methods
from workflows.exception_case import ExceptionCase

runner = CliRunner()

CONTRACT_COMMANDS = ["dev", "demo", "worker", "api", "seed", "check", "status", "exceptions", "send",
                     "histories", "replay"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETAILFLOW_")}
    env.update(extra)
    return env


def invoke(*args: str, **env: str):
    return runner.invoke(main, list(args), env=clean_env(**env))


def commands(group: object = None) -> set[str]:
    """The (sub)commands the app registers: what `--help` lists, read from the app rather than its help text."""
    app = typer.main.get_command(main)
    return set((app.commands[group] if group else app).commands)  # type: ignore[attr-defined]


@pytest.mark.unit
def test_every_contract_command_is_there():
    assert set(CONTRACT_COMMANDS) <= commands()
    assert commands("exceptions") == {"list", "resolve"}
    assert "export" in commands("histories")
    assert commands("counts") == {"approve", "reject"}
    result = invoke("--help")
    assert result.exit_code == 0 and all(command in result.output for command in CONTRACT_COMMANDS)


@pytest.mark.unit
def test_exceptions_list_refuses_an_unknown_status(tmp_path):
    result = invoke("exceptions", "list", "--status", "sideways", RETAILFLOW_DATA_DIR=str(tmp_path))
    assert result.exit_code == 2 and "--status is open, resolved or all" in result.output


@pytest.mark.unit
@pytest.mark.parametrize("command", ["seed", "check"])
def test_database_commands_without_a_database_say_what_to_do(command, tmp_path):
    result = invoke(command, RETAILFLOW_DATA_DIR=str(tmp_path))
    assert result.exit_code == 2
    assert "RETAILFLOW_DATABASE_URL" in result.output and "retailflow dev" in result.output


@pytest.mark.unit
def test_dev_refuses_an_unknown_part(tmp_path):
    result = invoke("dev", "--skip", "nginx", RETAILFLOW_DATA_DIR=str(tmp_path))
    assert result.exit_code == 2 and "unknown part" in result.output


@pytest.mark.unit
def test_replay_of_an_empty_folder(tmp_path):
    result = invoke("replay", str(tmp_path))
    assert result.exit_code == 0 and "no histories" in result.output


async def test_seed_then_check_through_the_cli(database_url):
    first = await asyncio.to_thread(invoke, "seed", RETAILFLOW_DATABASE_URL=database_url)
    assert first.exit_code == 0, first.output
    second = await asyncio.to_thread(invoke, "seed", RETAILFLOW_DATABASE_URL=database_url)
    assert json.loads(second.output)["movements_applied"] == 0
    checked = await asyncio.to_thread(invoke, "check", RETAILFLOW_DATABASE_URL=database_url)
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.output)["ok"] is True


async def test_status_of_an_unknown_key(dev_env):
    address = dev_env.client.service_client.config.target_host
    result = await asyncio.to_thread(invoke, "status", "order:web:does-not-exist",
                                     RETAILFLOW_TEMPORAL_ADDRESS=address)
    assert result.exit_code == 1, result.output
    body = json.loads(result.output)
    assert body["found"] is False and "not found" in body["processes"][0]["error"].lower()


def snapshot(status: CaseStatus, **kw: object) -> CaseSnapshot:
    key = unique("o")
    return CaseSnapshot(exception_id=f"exception:order:web:{key}:pick_overdue", kind=CaseKind.PICK_OVERDUE,
                        status=status, severity=Severity.MEDIUM, business_key=f"web/{key}",
                        summary="not picked in 4 h", process_workflow_id=f"order:web:{key}", process_run_id="r1",
                        opened_at=datetime.now(UTC), **kw)  # type: ignore[arg-type]


async def test_exceptions_list_prints_the_register_by_status(engine, database_url):
    opened = snapshot(CaseStatus.OPEN)
    resolved = snapshot(CaseStatus.RESOLVED, resolution=Resolution(resolved_at=datetime.now(UTC),
                                                                    resolved_by="ann", note="picked at last"))
    for case in (opened, resolved):
        await record(engine, case)

    async def listed(*args: str) -> dict[str, dict]:
        result = await asyncio.to_thread(invoke, "exceptions", "list", *args, RETAILFLOW_DATABASE_URL=database_url)
        assert result.exit_code == 0, result.output
        return {case["exception_id"]: case for case in json.loads(result.output)}

    mine = {opened.exception_id, resolved.exception_id}
    assert set(await listed()) & mine == {opened.exception_id}  # open by default
    [shown] = [c for i, c in (await listed("--status", "open")).items() if i == opened.exception_id]
    assert (shown["kind"], shown["business_key"], shown["severity"]) == ("pick_overdue", opened.business_key, "medium")
    done = await listed("--status", "resolved")
    assert set(done) & mine == {resolved.exception_id}
    assert done[resolved.exception_id]["resolution"]["resolved_by"] == "ann"
    assert set(await listed("--status", "all")) >= mine


async def test_exceptions_resolve_goes_through_the_case_and_says_why_it_cannot(dev_env, engine, database_url):
    client = dev_env.client
    task_queue = unique("cli-case")
    process_id = f"transfer:{unique('t')}"
    now = datetime.now(UTC)
    case_input = ExceptionCaseInput(
        exception_id=f"exception:{process_id}:transfer_overdue", kind=CaseKind.TRANSFER_OVERDUE,
        business_key=process_id.split(":")[1], summary="transfer not received in 48 h",
        lineage=Lineage(process_workflow_id=process_id, process_run_id="r1", process_type="Transfer",
                        deadline=now, breached_at=now), opened_at=now)
    env = {"RETAILFLOW_TEMPORAL_ADDRESS": client.service_client.config.target_host,
           "RETAILFLOW_DATABASE_URL": database_url}

    def cli(*args: str):
        return invoke("exceptions", *args, **env)

    async with Worker(client, task_queue=task_queue, workflows=[ExceptionCase, ProcessStandIn],
                      activities=activity_methods(CaseActivities(engine)), workflow_runner=workflow_runner()):
        await client.start_workflow(ProcessStandIn.run, id=process_id, task_queue=task_queue)
        case = await client.start_workflow(ExceptionCase.run, case_input, id=case_input.exception_id,
                                           task_queue=task_queue)
        try:
            await eventually(lambda: asyncio.to_thread(cli, "list"), lambda r: case.id in r.output,
                             what="the case in the register")
            blank = await asyncio.to_thread(cli, "resolve", case.id, "--note", " ")
            assert blank.exit_code == 1 and "a note is required" in blank.output
            done = await asyncio.to_thread(cli, "resolve", case.id, "--note", "found on the dock", "--by", "ann")
            assert done.exit_code == 0, done.output
            answer = json.loads(done.output)
            assert answer["status"] == "resolved" and answer["resolution"]["resolved_by"] == "ann"
            assert answer["resolution"]["note"] == "found on the dock"
            resolved = json.loads((await asyncio.to_thread(cli, "list", "--status", "resolved")).output)
            assert case.id in [c["exception_id"] for c in resolved]  # the case keeps its register
            again = await asyncio.to_thread(cli, "resolve", case.id, "--note", "me too")
            assert again.exit_code == 1 and "already resolved" in again.output and "ann" in again.output
        finally:
            await terminate_open_cases(client, [case.id, process_id])
    unknown = await asyncio.to_thread(cli, "resolve", f"exception:{unique('nope')}:pick_overdue", "--note", "x")
    assert unknown.exit_code == 1 and "no exception case" in unknown.output


async def test_worker_process_polls_serves_metrics_and_exits_0_on_sigterm(dev_env, database_url, tmp_path):
    """`retailflow worker` as production runs it: JSON logs, Prometheus metrics, graceful stop, exit code 0."""
    client = dev_env.client
    task_queue = unique("tq-cli")
    metrics_port = free_port()
    env = clean_env(RETAILFLOW_TEMPORAL_ADDRESS=client.service_client.config.target_host,
                    RETAILFLOW_DATABASE_URL=database_url, RETAILFLOW_TASK_QUEUE=task_queue,
                    RETAILFLOW_METRICS_PORT=str(metrics_port), RETAILFLOW_LOG_FORMAT="json")
    log = tmp_path / "worker.log"
    out = open(log, "w")  # noqa: ASYNC230
    proc = subprocess.Popen([sys.executable, "-m", "starters.cli", "worker"], env=env,  # noqa: ASYNC220
                            stdout=out, stderr=out, text=True)
    try:
        request = DescribeTaskQueueRequest(namespace=client.namespace, task_queue=TaskQueue(name=task_queue),
                                           task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW)

        async def pollers() -> int:
            assert proc.poll() is None, log.read_text()  # the worker died: no point waiting
            return len((await client.workflow_service.describe_task_queue(request)).pollers)

        await eventually(pollers, what="the worker polls its task queue", within=60, every=0.3)
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
        assert "temporal_" in metrics
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 40)
    finally:
        if proc.poll() is None:
            proc.kill()
        out.close()
    stderr = log.read_text()
    assert code == 0, stderr
    events = [json.loads(line)["event"] for line in stderr.splitlines() if line.startswith("{")]
    assert "worker started" in events and "worker stopped" in events

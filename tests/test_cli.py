"""The `retailflow` CLI: every contract command exists, clear messages instead of tracebacks, and the worker
process runs against a real server, serves metrics and exits 0 on SIGTERM."""
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from typer.testing import CliRunner

from devtools.cli import main
from devtools.embedded_postgres import free_port

runner = CliRunner()

CONTRACT_COMMANDS = ["dev", "demo", "worker", "api", "seed", "check", "status", "exceptions", "send",
                     "histories", "replay"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETAILFLOW_")}
    env.update(extra)
    return env


def invoke(*args: str, **env: str):
    return runner.invoke(main, list(args), env=clean_env(**env))


@pytest.mark.unit
def test_every_contract_command_is_there():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in CONTRACT_COMMANDS:
        assert command in result.output
    assert "list" in invoke("exceptions", "--help").output and "resolve" in invoke("exceptions", "--help").output
    assert "export" in invoke("histories", "--help").output
    assert "approve" in invoke("counts", "--help").output and "reject" in invoke("counts", "--help").output


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
    import asyncio

    first = await asyncio.to_thread(invoke, "seed", RETAILFLOW_DATABASE_URL=database_url)
    assert first.exit_code == 0, first.output
    second = await asyncio.to_thread(invoke, "seed", RETAILFLOW_DATABASE_URL=database_url)
    assert json.loads(second.output)["movements_applied"] == 0
    checked = await asyncio.to_thread(invoke, "check", RETAILFLOW_DATABASE_URL=database_url)
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.output)["ok"] is True


async def test_status_of_an_unknown_key(dev_env):
    import asyncio

    address = dev_env.client.service_client.config.target_host
    result = await asyncio.to_thread(invoke, "status", "order:web:does-not-exist",
                                     RETAILFLOW_TEMPORAL_ADDRESS=address)
    assert result.exit_code == 1, result.output
    body = json.loads(result.output)
    assert body["found"] is False and "not found" in body["processes"][0]["error"].lower()


async def test_worker_process_polls_serves_metrics_and_exits_0_on_sigterm(dev_env, database_url, tmp_path):
    """`retailflow worker` as production runs it: JSON logs, Prometheus metrics, graceful stop, exit code 0."""
    import asyncio

    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    from tests.support import unique

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
        deadline = time.monotonic() + 60
        while not (await client.workflow_service.describe_task_queue(request)).pollers:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "worker never polled"
            await asyncio.sleep(0.3)
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

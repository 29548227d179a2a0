"""Logging: one stream for our lines and stdlib loggers, Temporal's extras lifted, secrets masked."""
import io
import json
import logging

import pytest
import structlog
from pydantic import SecretStr

from config.logging import configure_logging, wants_json

pytestmark = pytest.mark.unit


@pytest.fixture
def stream():
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    out = io.StringIO()
    configure_logging(level="INFO", log_format="json", stream=out, service="test")
    yield out
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    structlog.contextvars.clear_contextvars()


def lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_structlog_and_stdlib_lines_share_one_json_stream(stream):
    structlog.get_logger("retailflow.test").info("ours", order_id="o-1")
    logging.getLogger("temporalio.worker").warning("theirs %s", "formatted")
    logging.getLogger("uvicorn.access").info("GET /healthz 200")
    got = lines(stream)
    assert [g["event"] for g in got] == ["ours", "theirs formatted", "GET /healthz 200"]
    assert got[0]["order_id"] == "o-1" and got[0]["level"] == "info" and got[0]["service"] == "test"
    assert got[1]["logger"] == "temporalio.worker" and got[1]["level"] == "warning"
    assert all("timestamp" in g for g in got)


def test_temporal_workflow_and_activity_extras_become_top_level_keys(stream):
    log = logging.getLogger("temporalio.workflow")
    log.info("reserved", extra={
        "temporal_workflow": {"workflow_id": "order:web:1", "run_id": "r1", "workflow_type": "ReserveToFulfill",
                              "attempt": 1, "namespace": "default", "task_queue": "retailflow"},
        "business_key": "web/1", "fields": {"sku": "SKU-1", "quantity": 2}, "correlation_id": "wh-9"})
    logging.getLogger("temporalio.activity").info("posted", extra={
        "temporal_activity": {"activity_type": "post_movement", "activity_id": "3", "workflow_id": "order:web:1",
                              "workflow_run_id": "r1", "workflow_type": "ReserveToFulfill", "attempt": 2}})
    wf, act = lines(stream)
    assert wf["workflow_id"] == "order:web:1" and wf["run_id"] == "r1"
    assert wf["workflow_type"] == "ReserveToFulfill" and wf["business_key"] == "web/1"
    assert wf["sku"] == "SKU-1" and wf["quantity"] == 2 and wf["correlation_id"] == "wh-9"
    assert "temporal_workflow" not in wf and "fields" not in wf
    assert act["activity_type"] == "post_movement" and act["run_id"] == "r1" and act["attempt"] == 2


def test_secrets_are_never_written(stream):
    structlog.get_logger().info("config", api_token="t0k3n", webhook_secrets={"web": "whsec_abc"},
                                temporal_api_key=SecretStr("key"), password="pw", sku="SKU-1")
    logging.getLogger("x").info("extra", extra={"fields": {"secret": "s3cr3t", "order_id": "o"}})
    text = stream.getvalue()
    for secret in ("t0k3n", "whsec_abc", "pw\"", "s3cr3t", "\"key\""):
        assert secret not in text
    first, second = lines(stream)
    assert first["sku"] == "SKU-1" and second["order_id"] == "o"


def test_exceptions_are_rendered_in_json(stream):
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("x").exception("failed")
    (line,) = lines(stream)
    assert "ValueError: boom" in line["exception"]


def test_console_on_a_terminal_json_otherwise(stream):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert wants_json("auto", io.StringIO())
    assert not wants_json("auto", Tty())
    assert wants_json("json", Tty()) and not wants_json("console", io.StringIO())
    out = Tty()
    configure_logging(level="INFO", log_format="auto", stream=out)
    structlog.get_logger().info("hello", order_id="o-2")
    assert "hello" in out.getvalue() and "order_id=o-2" in out.getvalue()
    assert not out.getvalue().lstrip().startswith("{")


def test_replay_safe_workflow_logger_does_not_append_info_to_the_message(stream):
    from temporalio import workflow

    assert workflow.logger.workflow_info_on_message is False


def test_a_bound_correlation_id_is_on_every_line(stream):
    from config.logging import correlation_id

    token = correlation_id.set("msg_123")
    try:
        logging.getLogger("temporalio.activity").info("inside")
    finally:
        correlation_id.reset(token)
    logging.getLogger("temporalio.activity").info("outside")
    inside, outside = lines(stream)
    assert inside["correlation_id"] == "msg_123" and "correlation_id" not in outside

"""Retries with jitter and a bound (stamina): the traffic driver's sender, the worker's connection to Temporal,
and the log line each retry of a fault writes (an expected wait writes none)."""
import asyncio
import io
import json
import time

import httpx
import pytest

from config.logging import configure_logging, log_retry
from devtools.embedded_postgres import free_port
from devtools.traffic import Sender
from starters.webhooks import ClaimPending
from tests.support import test_settings as make_settings
from worker.main import connect_with_retry

pytestmark = pytest.mark.unit


def sender_answering(*answers: httpx.Response | Exception, max_wait: float = 30.0) -> tuple[Sender, list]:
    seen: list[httpx.Request] = []
    queue = list(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    sender = Sender(base_url="http://rf", secrets={"web": "whsec_c2VjcmV0"}, max_wait=max_wait)
    sender.http = httpx.AsyncClient(base_url="http://rf", transport=httpx.MockTransport(handle))
    return sender, seen


async def test_the_sender_retries_what_was_not_acknowledged_with_the_same_webhook_id() -> None:
    sender, seen = sender_answering(
        httpx.Response(503, headers={"retry-after": "0"}, json={"status": 503}),
        httpx.ConnectError("refused"),
        httpx.Response(502),
        httpx.Response(202, json={"status": "started", "workflow_id": "transfer:T-1"}))
    answer = await sender.send("web", "transfer.requested", {"transfer_id": "T-1"})
    assert answer.status_code == 202
    assert len(seen) == 4 and len({r.headers["webhook-id"] for r in seen}) == 1
    assert sender.stats["retried_503"] == sender.stats["retried_502"] == sender.stats["retried_ConnectError"] == 1
    await sender.close()


async def test_the_sender_gives_up_after_its_bound() -> None:
    sender, seen = sender_answering(*[httpx.Response(503, headers={"retry-after": "0.2"})] * 50, max_wait=0.5)
    begun = time.monotonic()
    with pytest.raises(TimeoutError, match="not acknowledged within 0.5s"):
        await sender.send("web", "transfer.requested", {"transfer_id": "T-2"})
    assert 1 < len(seen) < 10 and time.monotonic() - begun < 5
    await sender.close()


async def test_the_worker_stops_trying_to_connect_at_its_bound_or_when_told_to_stop() -> None:
    settings = make_settings(temporal_address=f"127.0.0.1:{free_port()}")  # nobody listens there
    begun = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - the last connection error, whatever the SDK calls it
        await connect_with_retry(settings, give_up_after=1.5)
    assert 1.0 < time.monotonic() - begun < 10
    stop = asyncio.Event()
    stop.set()
    begun = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017
        await connect_with_retry(settings, give_up_after=60, stop=stop)
    assert time.monotonic() - begun < 5  # one attempt, no retry


def test_a_retry_of_a_fault_is_logged_and_an_expected_wait_is_not() -> None:
    from stamina.instrumentation import RetryDetails

    stream = io.StringIO()
    configure_logging(log_format="json", stream=stream)
    for error in (ConnectionRefusedError("refused"), ClaimPending("msg_1")):
        log_retry(RetryDetails(name="connect", args=(), kwargs={}, retry_num=2, wait_for=0.7, waited_so_far=1.2,
                               caused_by=error))
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    retries = [line for line in lines if line.get("event") == "retrying"]
    assert len(retries) == 1
    assert retries[0]["operation"] == "connect" and "refused" in retries[0]["error"] and retries[0]["retry"] == 2

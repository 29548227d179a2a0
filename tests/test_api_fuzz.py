"""schemathesis against /openapi.json of the running service (uvicorn on a real port, a dev server, a migrated
PostgreSQL): whatever it sends, never a 5xx. Webhook cases are also sent signed, so generated bodies get past
the signature and into validation and dispatch."""
import asyncio
import json
import socket
import threading
import time
import uuid
from datetime import timedelta

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from starters.api import server
from starters.signatures import sign_headers
from tests.support import seeded
from tests.support import test_settings as make_settings

SECRET = "whsec_" + "ZnV6ei1zZWNyZXQtMDEyMzQ1Njc4OQ=="
TOKEN = "fuzz-token"
EXAMPLES = 15  # per operation (keeps the file near two minutes on the shared machine)
SEEN: set[int] = set()  # answers to the signed webhook variants


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def service(dev_env, database_url):
    """The HTTP service and a worker in a thread (their own event loop, engine and Temporal client, as
    `retailflow api` and `retailflow worker` run), on a dev server and a migrated, seeded PostgreSQL."""
    target = dev_env.client.service_client.config.target_host
    cfg = make_settings(database_url=database_url, temporal_address=target, http_port=_free_port(),
                        webhook_secrets={"web": SECRET, "wms": SECRET, "payments": SECRET},
                        api_tokens=[TOKEN], order_decision_timeout=timedelta(seconds=2))
    srv = server(cfg)

    async def stack() -> None:
        from client.connect import connect
        from persistence.engine import create_engine
        from worker.factory import build_worker

        await seeded(database_url)
        engine = create_engine(database_url, pool_size=5, max_overflow=10)
        try:
            async with build_worker(await connect(cfg), engine, cfg):
                await srv.serve()
        finally:
            await engine.dispose()

    thread = threading.Thread(target=asyncio.run, args=(stack(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the service did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{cfg.http_port}"
    srv.should_exit = True
    thread.join(timeout=30)


def _check(case, service: str) -> None:
    response = case.call(headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code < 500, (case.method, case.formatted_path, response.status_code, response.text)
    if response.status_code >= 400:
        content_type = response.headers["content-type"]
        content_type = content_type[0] if isinstance(content_type, list) else content_type
        assert content_type == "application/problem+json", response.text

    if case.operation.path == "/webhooks/{source}" and isinstance(case.body, (dict, list)):
        # the same body, signed for a real source: through verification into validation and dispatch
        raw = json.dumps(case.body, default=str).encode()
        for source in ("web", "wms"):
            headers = {"content-type": "application/json", **sign_headers(SECRET, f"fz_{uuid.uuid4().hex}", raw)}
            signed = httpx.post(f"{service}/webhooks/{source}", content=raw, headers=headers, timeout=30)
            assert signed.status_code in {200, 202, 400, 403, 409, 413, 422}, signed.text
            SEEN.add(signed.status_code)


def test_no_5xx(service) -> None:
    """Every operation of the document, with generated (valid and invalid) parameters and bodies."""
    schema = schemathesis.openapi.from_url(f"{service}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case) -> None:
            _check(case, service)

        run()
    # the signed variants went past verification: some were refused by validation, some reached a process
    assert {202, 422} <= SEEN, SEEN


def test_the_openapi_document_publishes_every_event_schema_with_an_example(service) -> None:
    doc = httpx.get(f"{service}/openapi.json").json()
    body = doc["paths"]["/webhooks/{source}"]["post"]["requestBody"]["content"]["application/json"]
    assert len(body["schema"]["oneOf"]) == 20  # 14 + inventory control's 6
    assert len(body["examples"]) == 20
    for ref in body["schema"]["oneOf"]:
        assert ref["$ref"].split("/")[-1] in doc["components"]["schemas"]
    assert "ProblemBody" in doc["components"]["schemas"]


def test_send_file_signs_and_posts_an_example(service) -> None:
    """`retailflow send EVENT.json --source NAME` (devtools.send.send_file) against the running service."""
    from pathlib import Path

    from devtools.send import send_file

    examples = Path(__file__).resolve().parents[1] / "examples"
    cfg = make_settings(webhook_secrets={"wms": SECRET})
    answer = send_file(examples / "transfer_requested.json", "wms", cfg, url=service)
    assert answer.status_code == 202, answer.text
    assert answer.json()["workflow_id"] == "transfer:TR-2001"
    again = send_file(examples / "transfer_requested.json", "wms", cfg, url=service,
                      webhook_id=answer.request.headers["webhook-id"])
    assert again.json() == answer.json()
    refused = send_file(examples / "order_placed.json", "wms", cfg, url=service)  # wms may not place orders
    assert refused.status_code == 403
    with pytest.raises(ValueError, match="no webhook secret"):
        send_file(examples / "order_placed.json", "web", make_settings(), url=service)

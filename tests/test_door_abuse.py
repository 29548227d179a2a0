"""The door under abuse, against the real uvicorn on a socket: slow bodies and slow headers get 408 problem+json
and the connection is closed, one client cannot hold more than its share of connections, deep JSON is a 400
(never a 503 retried for ever), and unsafe secrets stop the service before it listens."""
import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from pydantic import ValidationError

from config.settings import DEV_API_TOKEN, dev_webhook_secret
from devtools.embedded_postgres import free_port
from persistence.engine import create_engine
from starters.api import create_app, server
from starters.guard import UnsafeConfiguration, check_startup, json_depth
from starters.signatures import sign_headers
from starters.webhooks import TemporalUnavailable
from tests.support import eventually
from tests.support import test_settings as make_settings

SECRET = "whsec_c2VjcmV0LWZvci10ZXN0cy0wMTIzNDU2Nzg5YWJjZGVm"
TOKEN = "door-token-0123456789"


async def _no_temporal():
    raise TemporalUnavailable("not in this test")


@pytest.fixture
async def door(database_url):
    port = free_port()
    settings = make_settings(database_url=database_url, http_port=port, webhook_secrets={"web": SECRET},
                             api_tokens={"t": {"token": TOKEN, "scopes": ["read"]}},
                             http_body_timeout=timedelta(seconds=1), http_header_timeout=timedelta(seconds=1),
                             http_max_connections_per_client=5)
    engine = create_engine(database_url, pool_size=2, max_overflow=0)
    srv = server(settings, create_app(settings, engine=engine, client_provider=_no_temporal))
    task = asyncio.create_task(srv.serve())
    await eventually(lambda: srv.started, what="uvicorn listening", every=0.05)  # it offers no event for that
    yield port
    srv.should_exit = True
    await task
    await engine.dispose()


async def _exchange(port: int, data: bytes, *, wait: float = 5.0) -> tuple[bytes, float]:
    """Send `data`, then read until the server closes the connection: (everything read, seconds it took)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    begun = time.monotonic()
    writer.write(data)
    await writer.drain()
    received = await asyncio.wait_for(reader.read(), wait)  # EOF: the server gave the connection back
    writer.close()
    return received, time.monotonic() - begun


def _status_and_body(raw: bytes) -> tuple[int, dict, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body), head.lower()


async def _healthy(port: int) -> bool:
    raw, _ = await _exchange(port, b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    return raw.startswith(b"HTTP/1.1 200")


async def test_a_slow_body_gets_408_and_the_connection_back(door) -> None:
    request = (b"POST /webhooks/web HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
               b"content-length: 1000\r\n\r\n{")
    raw, seconds = await _exchange(door, request)
    status, problem, head = _status_and_body(raw)
    assert status == 408 and b"application/problem+json" in head and b"connection: close" in head
    assert problem["status"] == 408 and "did not arrive within 1s" in problem["detail"]
    assert seconds < 4  # one body timeout, not the 40 s a held connection used to last
    assert await _healthy(door)


async def test_a_slow_body_on_a_read_api_route_too(door) -> None:
    request = (b"POST /exceptions/x/resolve HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
               b"authorization: Bearer " + TOKEN.encode() + b"\r\ncontent-length: 1000\r\n\r\n{\"no")
    raw, _ = await _exchange(door, request)
    assert _status_and_body(raw)[0] in (408, 403)  # 403 if the scope check came first; never held open


async def test_slow_headers_get_408_and_the_connection_back(door) -> None:
    raw, seconds = await _exchange(door, b"POST /webhooks/web HTTP/1.1\r\nhost: x\r\n")
    status, problem, _ = _status_and_body(raw)
    assert status == 408 and "headers did not arrive" in problem["detail"] and seconds < 4
    # a connection that never says anything is closed the same way
    raw, _ = await _exchange(door, b"")
    assert _status_and_body(raw)[0] == 408
    assert await _healthy(door)


async def test_one_client_holds_at_most_its_share_of_connections(door) -> None:
    held = [await asyncio.open_connection("127.0.0.1", door) for _ in range(5)]
    try:
        await asyncio.sleep(0.1)
        raw, _ = await _exchange(door, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        status, problem, _ = _status_and_body(raw)
        assert status == 429 and "open connections from one client" in problem["detail"]
    finally:
        for _, writer in held:
            writer.close()
    await asyncio.sleep(0.2)
    assert await _healthy(door)


async def test_deep_json_is_400_not_503(door) -> None:
    for depth in (33, 5_000, 100_000):
        body = b"[" * depth + b"]" * depth
        headers = {**sign_headers(SECRET, f"deep-{depth}", body), "content-type": "application/json",
                   "content-length": str(len(body)), "host": "x", "connection": "close"}
        request = b"POST /webhooks/web HTTP/1.1\r\n" + b"".join(
            f"{k}: {v}\r\n".encode() for k, v in headers.items()) + b"\r\n" + body
        raw, _ = await _exchange(door, request)
        status, problem, _ = _status_and_body(raw)
        assert (status, problem["status"]) == ((413, 413) if len(body) > 256 * 1024 else (400, 400)), depth
    # FastAPI-parsed bodies too
    body = b'{"note": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    request = (b"POST /exceptions/x/resolve HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
               b"content-type: application/json\r\nauthorization: Bearer " + TOKEN.encode() +
               f"\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body)
    raw, _ = await _exchange(door, request)
    assert _status_and_body(raw)[0] in (400, 403, 422)


def test_json_depth_counts_brackets_outside_strings() -> None:
    assert json_depth(b'{"a": [1, {"b": "[[[[["}]}') == 3
    assert json_depth(b'"\\"[[[["') == 0 and json_depth(b"[]") == 1 and json_depth(b"1") == 0
    assert json_depth(b'["\\\\", [[]]]') == 3


def test_secrets_are_checked_at_start_up() -> None:
    with pytest.raises(ValidationError, match="must be base64"):
        make_settings(webhook_secrets={"web": "whsec_***not base64***"})
    with pytest.raises(ValidationError, match="reserved"):
        make_settings(api_tokens={"process": {"token": TOKEN, "scopes": ["ops"]}})
    with pytest.raises(UnsafeConfiguration, match="shorter than 16"):
        check_startup(make_settings(webhook_secrets={"web": "short"}, api_tokens={"t": {"token": "x" * 20}}))
    with pytest.raises(UnsafeConfiguration, match="API token 't' is shorter"):
        check_startup(make_settings(api_tokens={"t": {"token": "short"}}))
    dev = make_settings(webhook_secrets={"web": dev_webhook_secret("web")}, api_tokens=[DEV_API_TOKEN])
    check_startup(dev)  # on loopback the documented dev secrets are what `retailflow dev` is for
    with pytest.raises(UnsafeConfiguration, match="documented development secret.*development token"):
        check_startup(dev.model_copy(update={"http_host": "0.0.0.0"}))
    check_startup(make_settings(http_host="0.0.0.0", webhook_secrets={"web": SECRET},
                                api_tokens={"t": {"token": TOKEN}}))


@pytest.mark.stack
def test_retailflow_api_refuses_dev_secrets_beyond_loopback_and_says_why(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETAILFLOW_")}
    env.update(RETAILFLOW_DATABASE_URL="postgresql+asyncpg://nobody@127.0.0.1:1/none", RETAILFLOW_HTTP_HOST="0.0.0.0",
               RETAILFLOW_WEBHOOK_SECRETS=json.dumps({"web": dev_webhook_secret("web")}),
               RETAILFLOW_API_TOKENS=json.dumps([DEV_API_TOKEN]), RETAILFLOW_LOG_FORMAT="console")
    done = subprocess.run([sys.executable, "-m", "starters.cli", "api"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "refusing to start" in done.stdout + done.stderr and "development secret" in done.stdout + done.stderr
    assert dev_webhook_secret("web") not in done.stdout + done.stderr  # says which, never the secret itself
    env["RETAILFLOW_WEBHOOK_SECRETS"] = json.dumps({"web": "whsec_%%%"})
    done = subprocess.run([sys.executable, "-m", "starters.cli", "api"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "RETAILFLOW_WEBHOOK_SECRETS" in done.stderr and "base64" in done.stderr

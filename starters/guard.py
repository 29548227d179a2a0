"""The door under abuse: header and body timeouts, connections per client, body size and JSON depth bounds, and
the start-up check of secrets and tokens (docs/door.md)."""
from __future__ import annotations

import asyncio
import ipaddress
import json
from collections import Counter
from itertools import accumulate
from typing import Any

from starlette.exceptions import HTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

from config.settings import DEV_API_TOKEN, Scope, Settings, dev_webhook_secret, webhook_key

MIN_SECRET_BYTES = 16  # a webhook key (decoded) and a bearer token, at least
KEEP_ALIVE_S = 5  # an idle connection is closed after this; a sender drops its own idle ones sooner
_BRACKETS = bytes(range(256)).translate(None, b"[]{}")


class SlowRequest(HTTPException):
    """The body did not arrive in time (408). An HTTPException so FastAPI's own body reading passes it on."""

    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"the request body did not arrive within {seconds:g}s", headers={"Connection": "close"})


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body is over the limit of {limit} bytes", headers={"Connection": "close"})


class BodyGuard:
    """Bounds the time and the bytes of every request body (see the module docstring)."""

    def __init__(self, app: Any, *, timeout: float, max_bytes: int) -> None:
        self.app = app
        self.timeout = timeout
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        received = 0
        done = False

        async def guarded_receive() -> dict:
            nonlocal deadline, received, done
            if done:  # body complete: what follows is the wait for a disconnect, not bounded here
                return await receive()
            if deadline is None:
                deadline = loop.time() + self.timeout
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise SlowRequest(self.timeout) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
                done = not message.get("more_body", False)
            return message

        await self.app(scope, guarded_receive, send)


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in `body` (brackets inside strings are not counted)."""
    text = body.decode("utf-8", errors="replace")
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:  # drop string literals (they may hold brackets); str.find keeps this at C speed
        quote = text.find('"', i)
        if quote < 0:
            out.append(text[i:])
            break
        out.append(text[i:quote])
        j = quote + 1
        while True:
            j = text.find('"', j)
            if j < 0:
                j = n
                break
            backslashes = 0
            k = j - 1
            while k > quote and text[k] == "\\":
                backslashes += 1
                k -= 1
            if backslashes % 2 == 0:
                break
            j += 1
        i = j + 1
    brackets = "".join(out).encode().translate(None, _BRACKETS)
    if not brackets:
        return 0
    return max(accumulate(1 if c in b"[{" else -1 for c in brackets))


def loads_bounded(body: bytes, max_depth: int) -> Any:
    """json.loads, but a document nested deeper than `max_depth` is a ValueError (answered 400)."""
    depth = json_depth(body)
    if depth > max_depth:
        raise ValueError(f"JSON nested {depth} levels deep; the limit is {max_depth}")
    return json.loads(body)


# --- connections: header timeout and per-client limit ------------------------------------------------------
def _problem_bytes(status: int, reason: str, detail: str) -> bytes:
    body = json.dumps({"type": f"https://retailflow.dev/problems/{'slow-request' if status == 408 else 'too-many'}",
                       "title": reason, "status": status, "detail": detail}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/problem+json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode()
    return head + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header timeout and a per-client connection limit (class attributes, set by
    `protocol_for(settings)`)."""

    header_timeout: float = 10.0
    per_client: int = 100
    open_by_client: Counter = Counter()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._peer = self.client[0] if self.client else None
        if self._peer is not None:
            self.open_by_client[self._peer] += 1
            if self.open_by_client[self._peer] > self.per_client:
                self._refuse(429, "Too Many Requests",
                             f"more than {self.per_client} open connections from one client")
                return
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        if getattr(self, "_peer", None) is not None:
            self.open_by_client[self._peer] -= 1
            if self.open_by_client[self._peer] <= 0:
                del self.open_by_client[self._peer]
            self._peer = None
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm_header_timer()  # the headers are in: the body has its own bound (BodyGuard)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()  # the next request's headers, on a kept-alive connection

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered
        self._refuse(408, "Request Timeout", f"the request headers did not arrive within {self.header_timeout:g}s")

    def data_received(self, data: bytes) -> None:
        if getattr(self, "_refused", False):
            return  # refused: what the client still sends is read and dropped, so closing sends no RST
        super().data_received(data)

    def _refuse(self, status: int, reason: str, detail: str) -> None:
        """Answer and hang up gracefully: the answer, our end of the stream closed, the socket closed a second
        later (closing at once, with the client's request unread, would reset the connection and lose the answer)."""
        if self.transport.is_closing():
            return
        self._refused = True
        self._disarm_header_timer()
        self.transport.write(_problem_bytes(status, reason, detail))
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(1.0, self.transport.close)
        else:
            self.transport.close()


def protocol_for(settings: Settings) -> type[GuardedH11Protocol]:
    """A protocol class carrying this service's limits (uvicorn instantiates it per connection)."""
    return type("RetailflowH11Protocol", (GuardedH11Protocol,), {
        "header_timeout": settings.http_header_timeout.total_seconds(),
        "per_client": settings.http_max_connections_per_client,
        "open_by_client": Counter(),
    })


# --- start-up checks ---------------------------------------------------------------------------------------
class UnsafeConfiguration(ValueError):
    """The service must not start with these settings; the message says what to change."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_startup(settings: Settings) -> None:
    """Raise UnsafeConfiguration listing every problem with the secrets and tokens the service would serve."""
    problems: list[str] = []
    public = not is_loopback(settings.http_host)
    for source in sorted(settings.webhook_secrets):
        for secret in settings.secrets_for(source):
            if len(webhook_key(secret)) < MIN_SECRET_BYTES:
                problems.append(f"the webhook secret of {source!r} is shorter than {MIN_SECRET_BYTES} bytes")
            if public and secret == dev_webhook_secret(source):
                problems.append(f"the webhook secret of {source!r} is the documented development secret")
    if settings.shopify_secret is not None and len(settings.shopify_secret.get_secret_value()) < MIN_SECRET_BYTES:
        problems.append(f"the Shopify secret is shorter than {MIN_SECRET_BYTES} characters")
    seen: set[str] = set()
    for name, token in sorted(settings.api_tokens.items()):
        value = token.token.get_secret_value()
        if len(value) < MIN_SECRET_BYTES:
            problems.append(f"API token {name!r} is shorter than {MIN_SECRET_BYTES} characters")
        if public and value == DEV_API_TOKEN:
            problems.append(f"API token {name!r} is the documented development token")
        if value in seen:
            problems.append(f"API token {name!r} has the same value as another token")
        seen.add(value)
        if not token.scopes:
            problems.append(f"API token {name!r} has no scopes (give read and/or ops)")
    if public and problems:
        problems.append(f"(the service listens on {settings.http_host}, beyond loopback)")
    if problems:
        raise UnsafeConfiguration("refusing to start: " + "; ".join(problems))


__all__ = ["BodyGuard", "GuardedH11Protocol", "Scope", "UnsafeConfiguration", "check_startup", "json_depth",
           "loads_bounded", "protocol_for"]

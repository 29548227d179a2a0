"""`retailflow send EVENT.json --source NAME`: sign one event with the source's configured secret (Standard
Webhooks) and post it to the running service, for the integration team's own tests.

The file is a webhook body (`{"type", "timestamp", "data"}`, see examples/). Each call is a new delivery (a fresh
`webhook-id`) unless `webhook_id` is given, which is how a redelivery is simulated.
"""
import json
import uuid
from pathlib import Path

import httpx

from config.settings import Settings
from starters.signatures import sign_headers


def base_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::", "") else settings.http_host
    return f"http://{host}:{settings.http_port}"


def signed_request(body: bytes, source: str, settings: Settings, *, webhook_id: str | None = None
                   ) -> tuple[str, dict[str, str]]:
    secrets = settings.secrets_for(source)
    if not secrets:
        raise ValueError(f"no webhook secret configured for source '{source}' (RETAILFLOW_WEBHOOK_SECRETS)")
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    headers = {"content-type": "application/json", **sign_headers(secrets[0], webhook_id, body)}
    return f"/webhooks/{source}", headers


def send_file(path: str | Path, source: str, settings: Settings, *, webhook_id: str | None = None,
              url: str | None = None, timeout: float = 30.0) -> httpx.Response:
    """Post the event in `path` as `source`; returns the service's response (any status)."""
    body = Path(path).read_bytes()
    json.loads(body)  # fail here, clearly, on a file that is not JSON
    route, headers = signed_request(body, source, settings, webhook_id=webhook_id)
    with httpx.Client(base_url=url or base_url(settings), timeout=timeout) as http:
        return http.post(route, content=body, headers=headers)

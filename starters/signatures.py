"""Standard Webhooks signatures (verify and sign) and Shopify's HMAC, every comparison in constant time.
Secrets, rotation and the replay window: docs/door.md."""
import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping
from datetime import timedelta

from config.settings import webhook_key

SECRET_PREFIX = "whsec_"


class SignatureError(Exception):
    """Why a delivery's signature is not accepted (answered 401)."""


def secret_bytes(secret: str) -> bytes:
    """The key bytes of a secret (settings refuse an invalid one at start-up; see config.settings.webhook_key)."""
    return webhook_key(secret)


def sign(secret: str, webhook_id: str, timestamp: int | str, body: bytes) -> str:
    """The `v1,<base64>` signature of one delivery with one secret."""
    message = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign_headers(secrets: str | Iterable[str], webhook_id: str, body: bytes, *, timestamp: int | None = None
                 ) -> dict[str, str]:
    """The three headers a sender adds (one signature per secret given)."""
    ts = int(time.time()) if timestamp is None else timestamp
    secrets = [secrets] if isinstance(secrets, str) else list(secrets)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": " ".join(sign(s, webhook_id, ts, body) for s in secrets),
    }


def verify(headers: Mapping[str, str], body: bytes, secrets: Iterable[str], *,
           tolerance: timedelta = timedelta(minutes=5), now: float | None = None) -> str:
    """Check a delivery's signature; returns its `webhook-id`. Raises `SignatureError`."""
    webhook_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    header = headers.get("webhook-signature")
    if not webhook_id or not timestamp or not header:
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature header")
    if len(webhook_id) > 200:
        raise SignatureError("webhook-id is too long")
    try:
        ts = int(timestamp)
    except ValueError as bad:
        raise SignatureError("webhook-timestamp is not a Unix timestamp") from bad
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance.total_seconds():
        raise SignatureError("webhook-timestamp is outside the tolerance (stale or from the future)")
    keys = []
    for s in secrets:
        try:
            keys.append(secret_bytes(s))
        except ValueError:
            continue  # a misconfigured secret never matches (and never answers 500)
    if not keys:
        raise SignatureError("no secret is configured for this source")
    message = f"{webhook_id}.{timestamp}.".encode() + body
    expected = [hmac.new(k, message, hashlib.sha256).digest() for k in keys]
    for candidate in header.split(" "):
        version, _, value = candidate.partition(",")
        if version != "v1" or not value:
            continue
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        # compare against every key (no early exit on which key matched)
        if any(hmac.compare_digest(given, e) for e in expected):
            return webhook_id
    raise SignatureError("no signature matches")


def shopify_sign(secret: str, body: bytes) -> str:
    """Shopify's `X-Shopify-Hmac-Sha256`: base64 HMAC-SHA256 of the raw body with the app's secret."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def shopify_verify(header: str | None, body: bytes, secrets: Iterable[str]) -> None:
    if not header:
        raise SignatureError("missing X-Shopify-Hmac-Sha256 header")
    try:
        given = base64.b64decode(header, validate=True)
    except (binascii.Error, ValueError) as bad:
        raise SignatureError("X-Shopify-Hmac-Sha256 is not base64") from bad
    expected = [hmac.new(s.encode(), body, hashlib.sha256).digest() for s in secrets]
    if not expected:
        raise SignatureError("no secret is configured for shopify")
    if not any(hmac.compare_digest(given, e) for e in expected):
        raise SignatureError("X-Shopify-Hmac-Sha256 does not match")

"""What every stub adapter shares: request fingerprints for idempotency, and the conflict refusal."""
import hashlib
import json
from typing import Any

from pydantic import BaseModel

from domain.errors import DomainError, ErrorType


def request_hash(payload: BaseModel | dict[str, Any], *, exclude: set[str] | None = None) -> str:
    """A stable fingerprint of what a request asks for, to tell a retry from a different request on one key."""
    data = payload.model_dump(mode="json", exclude=exclude) if isinstance(payload, BaseModel) else payload
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def conflict(key: str, what: str) -> DomainError:
    return DomainError(
        ErrorType.IDEMPOTENCY_CONFLICT,
        f"key {key!r} was already used for a different {what}; a retry must send the same request",
        key=key,
    )

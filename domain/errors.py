"""Error type names shared by activities (raised as ApplicationError.type) and workflows (matched on).

Business refusals are non-retryable: retrying an unknown SKU never makes it known.
"""
from enum import StrEnum


class ErrorType(StrEnum):
    UNKNOWN_SKU = "UnknownSku"
    UNKNOWN_UNIT = "UnknownUnit"
    UNKNOWN_LOCATION = "UnknownLocation"
    INSUFFICIENT_STOCK = "InsufficientStock"
    INVALID_TRANSITION = "InvalidTransition"
    OVER_CAPTURE = "OverCapture"
    IDEMPOTENCY_CONFLICT = "IdempotencyConflict"
    INJECTED_FAULT = "InjectedFault"  # retryable: the stub adapters' simulated outage


class DomainError(Exception):
    """A business rule refused something; `type` is the ErrorType the edge reports."""

    def __init__(self, type: ErrorType, message: str, **details: object) -> None:
        super().__init__(message)
        self.type = type
        self.details = details

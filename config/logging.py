"""One log stream for everything a retailflow process writes (ours, temporalio's, uvicorn's): structlog renders,
the standard library routes, secrets are masked. How the records get their keys: docs/runtime.md."""
from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import stamina.instrumentation
import structlog
from pydantic import SecretBytes, SecretStr
from temporalio import activity, workflow
from temporalio.runtime import LogForwardingConfig, LoggingConfig, TelemetryFilter

from config.settings import Settings

EventDict = MutableMapping[str, Any]

# The correlation ID (the webhook-id of the delivery that caused the work) of the current task; the Temporal
# interceptors in client.correlation carry it across processes in headers.
correlation_id: ContextVar[str | None] = ContextVar("retailflow_correlation_id", default=None)


@contextmanager
def bind(value: str | None) -> Iterator[None]:
    """Make `value` the correlation ID of everything done with Temporal inside the block (and of the structlog
    lines written inside it)."""
    token = correlation_id.set(value)
    try:
        with structlog.contextvars.bound_contextvars(correlation_id=value):
            yield
    finally:
        correlation_id.reset(token)


class CorrelationFilter(logging.Filter):
    """Adds `correlation_id` to every log record made while one is bound (activities, the HTTP service)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "correlation_id"):
            record.correlation_id = correlation_id.get()
        return True




# Keys whose values are masked wherever they appear (top level or inside `fields`).
SECRET_MARKERS = ("secret", "password", "token", "api_key", "apikey", "authorization", "private_key", "signature")
MASK = "**********"

# Temporal's extras -> the top-level keys we keep from them (and under which name).
_WORKFLOW_KEYS = {"workflow_id": "workflow_id", "run_id": "run_id", "workflow_type": "workflow_type",
                  "attempt": "attempt", "namespace": "namespace", "task_queue": "task_queue"}
_ACTIVITY_KEYS = {"workflow_id": "workflow_id", "workflow_run_id": "run_id", "workflow_type": "workflow_type",
                  "activity_type": "activity_type", "activity_id": "activity_id", "attempt": "attempt",
                  "namespace": "namespace", "task_queue": "task_queue"}
_OWN_EXTRAS = ("business_key", "correlation_id", "service")

# Noisy third-party loggers and the level they are held to.
_QUIET = {"sqlalchemy.engine": logging.WARNING, "alembic": logging.WARNING, "httpx": logging.WARNING,
          "httpcore": logging.WARNING, "asyncio": logging.WARNING, "hpack": logging.WARNING}


def is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(marker in lowered for marker in SECRET_MARKERS)


def _mask(key: str, value: Any) -> Any:
    if isinstance(value, (SecretStr, SecretBytes)):
        return MASK
    if is_secret_key(key) and value not in (None, "", [], {}):
        return MASK
    if isinstance(value, Mapping):
        return {k: _mask(str(k), v) for k, v in value.items()}
    return value


def lift_extras(logger: Any, method: str, event_dict: EventDict) -> EventDict:
    """Temporal's and our extras from a stdlib LogRecord (or structlog kwargs) -> top-level keys."""
    record: logging.LogRecord | None = event_dict.get("_record")
    sources: list[Mapping[str, Any]] = [event_dict]
    if record is not None:
        sources.insert(0, record.__dict__)
    for source in sources:
        workflow = source.get("temporal_workflow")
        if isinstance(workflow, Mapping):
            for key, name in _WORKFLOW_KEYS.items():
                if workflow.get(key) is not None:
                    event_dict.setdefault(name, workflow[key])
        activity = source.get("temporal_activity")
        if isinstance(activity, Mapping):
            for key, name in _ACTIVITY_KEYS.items():
                if activity.get(key) is not None:
                    event_dict.setdefault(name, activity[key])
        for key in _OWN_EXTRAS:
            if source.get(key) is not None:
                event_dict.setdefault(key, source[key])
        fields = source.get("fields")
        if isinstance(fields, Mapping):
            for key, value in fields.items():
                event_dict.setdefault(str(key), value)
    event_dict.pop("temporal_workflow", None)
    event_dict.pop("temporal_activity", None)
    if isinstance(event_dict.get("fields"), Mapping):
        event_dict.pop("fields")
    return event_dict


def redact_secrets(logger: Any, method: str, event_dict: EventDict) -> EventDict:
    for key in list(event_dict):
        if key.startswith("_") or key == "event":
            continue
        event_dict[key] = _mask(key, event_dict[key])
    return event_dict


def _plain(logger: Any, method: str, event_dict: EventDict) -> EventDict:
    """Values a JSON renderer cannot take (Decimal, datetime, enums, models) as strings / dicts."""
    for key, value in list(event_dict.items()):
        if key.startswith("_"):
            continue
        if hasattr(value, "model_dump"):
            event_dict[key] = value.model_dump(mode="json")
        elif not isinstance(value, (str, int, float, bool, type(None), list, dict)):
            event_dict[key] = str(value)
    return event_dict


def wants_json(log_format: str, stream: Any = None) -> bool:
    if log_format == "json":
        return True
    if log_format == "console":
        return False
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return not (isatty and isatty())


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def build_formatter(json: bool) -> structlog.stdlib.ProcessorFormatter:
    renderer: Any = (structlog.processors.JSONRenderer() if json
                     else structlog.dev.ConsoleRenderer(colors=False, sort_keys=False))
    final: list[Any] = [
        lift_extras,
        redact_secrets,
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
    ]
    if json:
        final += [structlog.processors.format_exc_info, _plain]
    final.append(renderer)
    return structlog.stdlib.ProcessorFormatter(foreign_pre_chain=_shared_processors(), processors=final)


def configure_logging(settings: Settings | None = None, *, service: str | None = None,
                      level: str | None = None, log_format: str | None = None, stream: Any = None) -> None:
    """Route every logger through one structlog-rendered handler on stderr (idempotent: safe to call again)."""
    level_name = (level or (settings.log_level if settings else "INFO")).upper()
    fmt = log_format or (settings.log_format if settings else "auto")
    stream = stream if stream is not None else sys.stderr
    json = wants_json(fmt, stream)

    structlog.configure(
        processors=[*_shared_processors(), structlog.stdlib.PositionalArgumentsFormatter(),
                    structlog.processors.StackInfoRenderer(),
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    if service:
        structlog.contextvars.bind_contextvars(service=service)

    handler = logging.StreamHandler(stream)
    handler.setFormatter(build_formatter(json))
    handler.set_name("retailflow")
    handler.addFilter(CorrelationFilter())  # the correlation ID (webhook-id) bound for this task, on every record
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level_name)

    # Third-party loggers with their own handlers (uvicorn's dictConfig) write through ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "temporalio", "fastapi"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    for name, quiet in _QUIET.items():
        logging.getLogger(name).setLevel(max(quiet, logging.getLevelName(level_name)))

    # Temporal appends its info dict to the message unless told not to; we lift it into keys instead.
    workflow.logger.workflow_info_on_message = False
    activity.logger.activity_info_on_message = False
    stamina.instrumentation.set_on_retry_hooks([log_retry])


def log_retry(details: Any) -> None:
    """stamina's retry hook (every retry in retailflow goes through stamina): one warning a retry, in our stream.
    A wait that is expected, not a fault (an exception class with `quiet_retry = True`, e.g. a redelivery
    waiting for the first delivery's answer), is not logged."""
    if getattr(details.caused_by, "quiet_retry", False):
        return
    structlog.get_logger("retailflow.retry").warning(
        "retrying", operation=details.name, retry=details.retry_num, error=repr(details.caused_by),
        retry_in_s=round(details.wait_for, 2), waited_s=round(details.waited_so_far, 2))


def temporal_runtime_logging(level: str = "WARN") -> LoggingConfig:
    """The Rust core's own log lines, forwarded into the `temporalio.core` stdlib logger (one stream)."""
    return LoggingConfig(
        filter=TelemetryFilter(core_level=level, other_level="ERROR"),
        forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
    )


"""All configuration, from environment variables prefixed RETAILFLOW_ (pydantic-settings).

JSON-valued settings (secrets, tokens, SLA overrides) are parsed by pydantic-settings itself; durations are
ISO 8601 (`PT4H`, `P3D`).
"""
import base64
import binascii
import warnings
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.process import PartialPolicy, ProcessPolicy
from domain.sla import SLA_DEFAULTS, SlaKind, SlaPolicy


class FaultSpec(BaseModel):
    """Simulated trouble for one adapter operation: a failure rate (0..1) and added latency."""

    failure_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    latency_ms: int = Field(default=0, ge=0)
    random_latency: bool = False  # when true, each call waits a uniform 0..latency_ms instead of latency_ms


class Scope(StrEnum):
    """What a read-API token may do: `read` every GET; `ops` act on processes (resolve a case, cancel, approve)."""

    READ = "read"
    OPS = "ops"


# Names the processes themselves use as `resolved_by`; a token named so could pass for one of them.
RESERVED_TOKEN_NAMES = frozenset({"process", "reconciliation", "system"})


class ApiToken(BaseModel):
    """One bearer token of the read API: its secret and its scopes. Its name (the key in RETAILFLOW_API_TOKENS)
    is who acted, e.g. the `resolved_by` of a case it resolves."""

    token: SecretStr
    scopes: frozenset[Scope] = frozenset({Scope.READ})


def _legacy_tokens(value: Any) -> Any:
    """The old form, a JSON list of tokens: each becomes `token-<n>` with read and ops (what it could do before),
    with a deprecation warning."""
    if isinstance(value, (list, tuple)):
        if not value:
            return {}
        warnings.warn("RETAILFLOW_API_TOKENS as a list is deprecated: give a JSON object name -> "
                      '{"token": ..., "scopes": ["read", "ops"]} (list entries get both scopes and are named '
                      "token-1, token-2, ...)", DeprecationWarning, stacklevel=2)
        return {f"token-{n}": {"token": t.get_secret_value() if isinstance(t, SecretStr) else t,
                               "scopes": [Scope.READ, Scope.OPS]} for n, t in enumerate(value, start=1)}
    return value


def webhook_key(secret: str) -> bytes:
    """The HMAC key of a webhook secret: `whsec_` + base64 is decoded (invalid base64 raises ValueError), anything
    else is the raw UTF-8 bytes."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret[len("whsec_"):], validate=True)
        except (binascii.Error, ValueError) as bad:
            raise ValueError("a webhook secret starting 'whsec_' must be base64 after the prefix") from bad
    return secret.encode()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RETAILFLOW_", env_file=None, extra="ignore")

    # Temporal
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    task_queue: str = "retailflow"
    temporal_tls: bool = False
    temporal_tls_server_name: str | None = None
    temporal_tls_ca_path: Path | None = None
    temporal_tls_cert_path: Path | None = None  # mTLS client certificate
    temporal_tls_key_path: Path | None = None
    temporal_api_key: SecretStr | None = None  # Temporal Cloud API key (implies TLS)
    temporal_ui_port: int = 8233
    # How long Temporal keeps a closed run (set on the namespace by the dev stack and docker-compose). Past it,
    # the process registry in PostgreSQL still answers for the process and keeps its business key closed.
    namespace_retention: timedelta = timedelta(days=30)

    # Storage
    database_url: str | None = None  # postgresql+asyncpg://...; unset in the dev stack: embedded PostgreSQL
    data_dir: Path = Path(".retailflow")
    # every database call is bounded (persistence/engine.py): a statement, a wait for a pool connection, a lock
    database_statement_timeout: timedelta = timedelta(seconds=10)
    database_pool_timeout: timedelta = timedelta(seconds=5)
    database_connect_timeout: timedelta = timedelta(seconds=5)
    webhook_delivery_retention: timedelta = timedelta(days=30)  # delivery records kept this long, then purged

    # HTTP service
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    webhook_secrets: dict[str, str | list[str]] = Field(default_factory=dict)
    webhook_sources: dict[str, list[str]] = Field(default_factory=dict)  # extra sources -> allowed event types
    webhook_max_body_bytes: int = 256 * 1024
    webhook_tolerance: timedelta = timedelta(minutes=5)
    shopify_secret: SecretStr | None = None
    api_tokens: dict[str, ApiToken] = Field(default_factory=dict)  # name -> {token, scopes}; a list is legacy
    order_decision_timeout: timedelta = timedelta(seconds=5)
    # the door's Prometheus metrics: their own port, on loopback unless told otherwise (docs/ops.md); 0 = off
    http_metrics_host: str = "127.0.0.1"
    http_metrics_port: int = 9465
    # the door under abuse (starters/guard.py): a request's headers and its body must each arrive within these
    http_header_timeout: timedelta = timedelta(seconds=10)
    http_body_timeout: timedelta = timedelta(seconds=10)
    http_max_connections: int = 1000  # all clients together; over it new requests get 503
    http_max_connections_per_client: int = 100  # per peer address (a proxy in front makes every client one)
    http_max_json_depth: int = 32
    unopened_process_limit: int = 1000  # per source: processes opened by an event that never got their opening one
    unopened_event_limit: int = 200  # per such process: the events it holds before its opening event comes

    # Process rules
    sla: dict[SlaKind, timedelta] = Field(default_factory=dict)
    sla_by_channel: dict[str, dict[SlaKind, timedelta]] = Field(default_factory=dict)
    exception_escalate_every: timedelta = timedelta(hours=4)
    partial_orders: PartialPolicy = PartialPolicy.ACCEPT
    partial_orders_by_channel: dict[str, PartialPolicy] = Field(default_factory=dict)
    partial_transfers: PartialPolicy = PartialPolicy.ACCEPT
    transfer_receipt_grace: timedelta = timedelta(hours=24)  # a transfer's shortage is final this long after its last receipt
    transfer_ship_grace: timedelta = timedelta(hours=24)  # a transfer's unshipped rest is released this long after its last notice
    settlement_tolerance: Decimal = Decimal("0.00")
    safety_stock: dict[str, int] = Field(default_factory=dict)  # location_id -> units held back per SKU
    # How long a worker keeps item master rows it read (activities/erp.py); 0 reads the ERP every time.
    master_data_ttl: float = Field(default=60.0, ge=0)
    receipt_over_tolerance: Decimal = Decimal("0.05")  # a PO line received beyond ordered x 1.05 opens a case
    count_tolerance_units: int = 2  # a count variance of at most this many units per SKU ...
    count_tolerance_value: Decimal = Decimal("25.00")  # ... and at most this value at standard cost: no approval
    reconciliation_every: timedelta = timedelta(minutes=15)
    # holders of stock that moved none for this long are described to Temporal (fewer describes per run)
    reconciliation_orphan_quiet_for: timedelta = timedelta(minutes=30)

    # Stub adapters: "erp.reserve" / "wms.*" / "pos.capture" -> FaultSpec
    faults: dict[str, FaultSpec] = Field(default_factory=dict)

    # Worker tuning and observability
    # each activity slot has its own pool connection (worker/main.py), so no activity waits for one; 3 replicas
    # of 60 plus the HTTP service stay well under PostgreSQL's max_connections (400 in docker-compose.yml)
    max_concurrent_activities: int = 60
    # swept at 2, 5, 20 and 100 on 2 cores (`python -m bench --wft-slots`, bench/RESULTS.md "Workflow-task
    # slots"): no difference beyond the noise of a loaded machine, slots are not what limits 2 cores; the SDK's default
    max_concurrent_workflow_tasks: int = 100
    max_cached_workflows: int = 2_000  # ~0.26 MiB per cached open order: keeps a worker under 1 GiB (bench/RESULTS.md)
    workflow_task_pollers: int = Field(default=4, ge=1)  # the most polls in flight (with autoscaling: the ceiling)
    activity_task_pollers: int = Field(default=4, ge=1)
    # "fixed": that many polls always; "autoscaling": the SDK grows and shrinks them by the server's backlog hints
    poller_behavior: Literal["fixed", "autoscaling"] = "fixed"
    # share of the workflow-task polls on the normal queue (a new run's first task) rather than the sticky one
    nonsticky_to_sticky_poll_ratio: float = Field(default=0.2, gt=0, le=1)
    metrics_host: str = "127.0.0.1"  # the worker's /metrics binds loopback unless configured (compose: 0.0.0.0)
    metrics_port: int | None = None
    otlp_endpoint: str | None = None  # OTLP/HTTP base URL (http://jaeger:4318): traces on (config/tracing.py)
    log_level: str = "INFO"
    log_format: str = "auto"  # auto: console on a terminal, JSON otherwise; or "json" / "console"

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _token_forms(cls, value: Any) -> Any:
        return _legacy_tokens(value)

    @field_validator("api_tokens")
    @classmethod
    def _token_names(cls, value: dict[str, ApiToken]) -> dict[str, ApiToken]:
        for name in value:
            if not name or len(name) > 64 or name.lower() in RESERVED_TOKEN_NAMES:
                raise ValueError(f"API token name {name!r} is empty, longer than 64 or reserved "
                                 f"({', '.join(sorted(RESERVED_TOKEN_NAMES))})")
        return value

    @field_validator("webhook_secrets")
    @classmethod
    def _secrets_decode(cls, value: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        for source, secrets in value.items():
            for secret in [secrets] if isinstance(secrets, str) else secrets:
                try:
                    webhook_key(secret)
                except ValueError as bad:
                    raise ValueError(f"webhook secret of source {source!r}: {bad}") from None
        return value

    def sla_policy(self, channel: str | None) -> SlaPolicy:
        deadlines = {**SLA_DEFAULTS, **self.sla, **self.sla_by_channel.get(channel or "", {})}
        return SlaPolicy(deadlines=deadlines, escalate_every=self.exception_escalate_every)

    def process_policy(self, process: str, channel: str | None) -> ProcessPolicy:
        """The rules a new process of kind `process` (order, settle, transfer, return) works to."""
        if process == "order":
            partial = self.partial_orders_by_channel.get(channel or "", self.partial_orders)
        elif process == "transfer":
            partial = self.partial_transfers
        else:
            partial = PartialPolicy.ACCEPT
        return ProcessPolicy(
            sla=self.sla_policy(channel),
            partial=partial,
            settlement_tolerance=self.settlement_tolerance,
            receipt_grace=self.transfer_receipt_grace,
            ship_grace=self.transfer_ship_grace,
            over_receipt_tolerance=self.receipt_over_tolerance,
            count_tolerance_units=self.count_tolerance_units,
            count_tolerance_value=self.count_tolerance_value,
        )

    def secrets_for(self, source: str) -> list[str]:
        value = self.webhook_secrets.get(source, [])
        return [value] if isinstance(value, str) else list(value)


# The documented development secrets (`retailflow dev` fills them in); the door refuses them beyond loopback.
DEV_API_TOKEN = "retailflow-dev-token"


def dev_webhook_secret(source: str) -> str:
    """The documented development secret of a webhook source: `whsec_` + base64("retailflow-dev-<source>")."""
    return "whsec_" + base64.b64encode(f"retailflow-dev-{source}".encode()).decode()

"""All configuration, from environment variables prefixed RETAILFLOW_ (pydantic-settings).

JSON-valued settings (secrets, tokens, SLA overrides) are parsed by pydantic-settings itself; durations are
ISO 8601 (`PT4H`, `P3D`).
"""
from datetime import timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.process import PartialPolicy, ProcessPolicy
from domain.sla import SLA_DEFAULTS, SlaKind, SlaPolicy


class FaultSpec(BaseModel):
    """Simulated trouble for one adapter operation: a failure rate (0..1) and added latency."""

    failure_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    latency_ms: int = Field(default=0, ge=0)
    random_latency: bool = False  # when true, each call waits a uniform 0..latency_ms instead of latency_ms


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

    # HTTP service
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    webhook_secrets: dict[str, str | list[str]] = Field(default_factory=dict)
    webhook_sources: dict[str, list[str]] = Field(default_factory=dict)  # extra sources -> allowed event types
    webhook_max_body_bytes: int = 256 * 1024
    webhook_tolerance: timedelta = timedelta(minutes=5)
    shopify_secret: SecretStr | None = None
    api_tokens: list[SecretStr] = Field(default_factory=list)
    order_decision_timeout: timedelta = timedelta(seconds=5)
    # the door's Prometheus metrics: their own port, on loopback unless told otherwise (docs/ops.md); 0 = off
    http_metrics_host: str = "127.0.0.1"
    http_metrics_port: int = 9465

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
    receipt_over_tolerance: Decimal = Decimal("0.05")  # a PO line received beyond ordered x 1.05 opens a case
    count_tolerance_units: int = 2  # a count variance of at most this many units per SKU ...
    count_tolerance_value: Decimal = Decimal("25.00")  # ... and at most this value at standard cost: no approval
    reconciliation_every: timedelta = timedelta(minutes=15)

    # Stub adapters: "erp.reserve" / "wms.*" / "pos.capture" -> FaultSpec
    faults: dict[str, FaultSpec] = Field(default_factory=dict)

    # Worker tuning and observability
    max_concurrent_activities: int = 200
    max_concurrent_workflow_tasks: int = 100
    max_cached_workflows: int = 2_000  # ~0.26 MiB per cached open order: keeps a worker under 1 GiB (bench/RESULTS.md)
    workflow_task_pollers: int = 4
    activity_task_pollers: int = 4
    metrics_port: int | None = None
    otlp_endpoint: str | None = None  # OTLP/HTTP base URL (http://jaeger:4318): traces on (worker/tracing.py)
    log_level: str = "INFO"
    log_format: str = "auto"  # auto: console on a terminal, JSON otherwise; or "json" / "console"

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


@lru_cache
def get_settings() -> Settings:
    return Settings()

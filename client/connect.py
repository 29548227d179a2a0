"""The one way every part of retailflow connects to Temporal: pydantic converter, TLS, API key, interceptors."""
from temporalio.client import Client, Interceptor, TLSConfig
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime

from client.correlation import CorrelationInterceptor
from config.settings import Settings


def tls_config(settings: Settings) -> TLSConfig | bool:
    """TLS for a self-hosted cluster (CA, mTLS client pair) or Temporal Cloud (API key implies TLS)."""
    if not (settings.temporal_tls or settings.temporal_api_key or settings.temporal_tls_cert_path):
        return False

    def read(path):  # noqa: ANN001
        return path.read_bytes() if path else None

    return TLSConfig(
        server_root_ca_cert=read(settings.temporal_tls_ca_path),
        client_cert=read(settings.temporal_tls_cert_path),
        client_private_key=read(settings.temporal_tls_key_path),
        domain=settings.temporal_tls_server_name,
    )


async def connect(
    settings: Settings,
    *,
    interceptors: list[Interceptor] | None = None,
    runtime: Runtime | None = None,
) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        tls=tls_config(settings),
        api_key=settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None,
        # correlation IDs (webhook-id) into workflow and activity logs; see client/correlation.py
        interceptors=[CorrelationInterceptor(), *(interceptors or [])],
        runtime=runtime,
    )

"""docker-compose.yml checked against the code (no Docker engine runs here): commands, settings, ports,
search attributes, health checks and start order."""
import json
import os
import re
from pathlib import Path

import pytest
import typer.main
import yaml

from starters.cli import main
from worker.settings import Settings
from workflows.common import SEARCH_ATTRIBUTES

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict = COMPOSE["services"]
RETAILFLOW = {name: s for name, s in SERVICES.items() if s.get("build") or "retailflow" in str(s.get("image", ""))}


def cli_commands() -> dict:
    return typer.main.get_command(main).commands  # type: ignore[attr-defined]


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def host_port(service: dict, container_port: int) -> int:
    for mapping in service.get("ports", []):
        host, _, inner = str(mapping).rpartition(":")
        if int(inner) == container_port:
            return int(host)
    raise AssertionError(f"port {container_port} not published")


def test_the_services_of_a_production_stack_are_there():
    assert {"postgres", "temporal", "temporal-ui", "search-attributes", "worker", "api"} <= set(SERVICES)
    assert set(RETAILFLOW) >= {"worker", "api"}
    assert SERVICES["worker"]["deploy"]["replicas"] >= 2
    assert "auto-setup" in SERVICES["temporal"]["image"]
    assert env_of(SERVICES["temporal"])["POSTGRES_SEEDS"] == "postgres"


def test_each_retailflow_service_runs_a_real_cli_command():
    commands = cli_commands()
    for name, service in RETAILFLOW.items():
        command = service["command"]
        assert command[0] == "retailflow", name
        assert command[1] in commands, f"{name}: `retailflow {command[1]}` is not a command"


def test_each_retailflow_variable_is_a_setting():
    fields = set(Settings.model_fields)
    for name, service in RETAILFLOW.items():
        for key in env_of(service):
            if key.startswith("RETAILFLOW_"):
                assert key.removeprefix("RETAILFLOW_").lower() in fields, f"{name}: {key} is not a setting"


SAMPLES = {"RETAILFLOW_WEBHOOK_SECRETS": '{"web": "whsec_c2VjcmV0"}', "RETAILFLOW_API_TOKENS": '["t0k3n"]'}


def interpolate(value: str) -> str:
    """Compose's `${VAR:-default}` -> default, `${VAR:?message}` (required) -> a sample value."""
    value = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: m.group(2), value)
    return re.sub(r"\$\{(\w+):\?[^}]*\}", lambda m: SAMPLES[m.group(1)], value)


def test_the_settings_it_sets_parse(monkeypatch):
    for name, service in RETAILFLOW.items():
        for key in [k for k in os.environ if k.startswith("RETAILFLOW_")]:
            monkeypatch.delenv(key)
        for key, value in env_of(service).items():
            monkeypatch.setenv(key, interpolate(value))
        settings = Settings()
        if "RETAILFLOW_API_TOKENS" in env_of(service):
            assert [t.get_secret_value() for t in settings.api_tokens] == ["t0k3n"]
            assert settings.secrets_for("web") == ["whsec_c2VjcmV0"]
        assert settings.task_queue == "retailflow", name
        assert settings.database_url and settings.database_url.startswith("postgresql+asyncpg://"), name


def test_ports_agree_with_the_contract():
    defaults = Settings()
    assert host_port(SERVICES["temporal"], 7233) == int(defaults.temporal_address.rsplit(":", 1)[1]) == 7233
    assert host_port(SERVICES["temporal-ui"], 8080) == defaults.temporal_ui_port == 8233
    api_env = env_of(SERVICES["api"])
    assert host_port(SERVICES["api"], int(api_env["RETAILFLOW_HTTP_PORT"])) == defaults.http_port == 8000
    assert api_env["RETAILFLOW_HTTP_HOST"] == "0.0.0.0"
    for service in RETAILFLOW.values():
        assert env_of(service)["RETAILFLOW_TEMPORAL_ADDRESS"] == "temporal:7233"


def test_the_contract_search_attributes_are_registered():
    script = "\n".join(SERVICES["search-attributes"]["command"])
    registered = dict(re.findall(r"(\w+)=(Keyword|KeywordList|Bool|Int|Double|Datetime|Text)\b", script))
    assert registered == SEARCH_ATTRIBUTES
    assert "temporal operator search-attribute create" in script


def test_start_order_waits_on_health_and_one_shots():
    for name, service in SERVICES.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], f"{name} waits on {dependency}, which has no check"
    for name in ("worker", "api"):
        conditions = {d: r["condition"] for d, r in SERVICES[name]["depends_on"].items()}
        assert conditions["temporal"] == "service_healthy" and conditions["postgres"] == "service_healthy"
        assert conditions["search-attributes"] == "service_completed_successfully"
        assert conditions["migrate"] == "service_completed_successfully"
        assert "healthcheck" in SERVICES[name]
    worker_env = env_of(SERVICES["worker"])
    assert worker_env["RETAILFLOW_METRICS_PORT"] in str(SERVICES["worker"]["healthcheck"]["test"])


def test_the_image_holds_every_package_and_the_locked_dependencies():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("domain", "workflows", "activities", "worker", "starters"):
        assert f"COPY {package} ./{package}" in dockerfile
    assert "uv sync --frozen" in dockerfile and "uv.lock" in dockerfile


# --- observability: the trace viewer, the scrape config and the dashboard --------------------------------
DEPLOY = ROOT / "deploy"


def mounted(service: dict, inside: str) -> Path:
    """The file of this checkout mounted at `inside` in the service."""
    for volume in service.get("volumes", []):
        source, _, rest = str(volume).partition(":")
        if rest.split(":")[0] == inside:
            assert source.startswith("./"), volume
            return ROOT / source
    raise AssertionError(f"nothing mounted at {inside}")


def test_the_trace_viewer_is_wired_to_every_retailflow_service():
    viewers = [name for name, s in SERVICES.items() if "jaeger" in str(s.get("image", ""))]
    assert viewers == ["jaeger"]
    assert host_port(SERVICES["jaeger"], 16686) == 16686  # the Jaeger UI
    for name in ("worker", "api"):
        endpoint = interpolate(env_of(SERVICES[name])["RETAILFLOW_OTLP_ENDPOINT"])
        assert endpoint == "http://jaeger:4318", name  # OTLP/HTTP, what worker/tracing.py exports
        assert "jaeger" not in (SERVICES[name].get("depends_on") or {}), f"{name} must not wait on tracing"


def test_prometheus_scrapes_the_workers_and_the_door_on_their_metrics_ports():
    config = yaml.safe_load(mounted(SERVICES["prometheus"], "/etc/prometheus/prometheus.yml").read_text())
    assert mounted(SERVICES["prometheus"], "/etc/prometheus/prometheus.yml") == DEPLOY / "prometheus.yml"
    targets: dict[str, set[tuple[str, int]]] = {}
    for job in config["scrape_configs"]:
        found = targets.setdefault(job["job_name"], set())
        for sd in job.get("dns_sd_configs", []):
            found |= {(name, int(sd["port"])) for name in sd["names"]}
        for static in job.get("static_configs", []):
            found |= {(t.rsplit(":", 1)[0], int(t.rsplit(":", 1)[1])) for t in static["targets"]}
    worker_port = int(env_of(SERVICES["worker"])["RETAILFLOW_METRICS_PORT"])
    api_env = env_of(SERVICES["api"])
    door_port = int(api_env["RETAILFLOW_HTTP_METRICS_PORT"])
    assert targets["retailflow-worker"] == {("worker", worker_port)}
    assert targets["retailflow-door"] == {("api", door_port)}
    assert door_port != int(api_env["RETAILFLOW_HTTP_PORT"])  # not the public port
    assert api_env["RETAILFLOW_HTTP_METRICS_HOST"] == "0.0.0.0"  # reachable on the compose network...
    for name, port in (("api", door_port), ("worker", worker_port)):  # ...but never published to the host
        with pytest.raises(AssertionError):
            host_port(SERVICES[name], port)
    for job, found in targets.items():
        for host, _ in found:
            assert host == "localhost" or host in SERVICES, f"{job}: {host} is not a compose service"


def test_the_dashboard_uses_the_provisioned_data_source_and_metrics_that_exist():
    from starters import door_metrics
    from worker import metrics as worker_metrics

    grafana = SERVICES["grafana"]
    dashboard_file = mounted(grafana, "/var/lib/grafana/dashboards/retailflow.json")
    assert dashboard_file == DEPLOY / "grafana" / "retailflow.json"
    provisioning = mounted(grafana, "/etc/grafana/provisioning")
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert [(s["uid"], s["url"]) for s in sources] == [("prometheus", "http://prometheus:9090")]
    providers = yaml.safe_load((provisioning / "dashboards" / "retailflow.yml").read_text())["providers"]
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards"

    dashboard = json.loads(dashboard_file.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert all(t["datasource"]["uid"] == "prometheus" for p in dashboard["panels"] for t in p.get("targets", []))
    known = {getattr(door_metrics, n) for n in ("DELIVERIES", "DUPLICATES", "LATE", "SIGNATURE_FAILURES",
                                                "UNAVAILABLE", "DECISION_SECONDS")}
    known |= {worker_metrics.PROCESSES_STARTED, worker_metrics.PROCESSES_COMPLETED, worker_metrics.CASES_OPENED}
    used = {m for e in exprs for m in re.findall(r"\b(retailflow_[a-z_]+?)(?:_total|_bucket|_count|_sum|\(|\b)", e)}
    assert used and used <= known, used - known
    assert known <= used, f"metrics without a panel: {known - used}"

"""docker-compose.yml checked against the code (no Docker engine runs here): commands, settings, ports,
search attributes, health checks and start order, that it is safe by default (Temporal's frontend published
nowhere, the UI and the observability tools on loopback, the UI read-only, a supported server image with its
schema set up by admin-tools, separate PostgreSQL roles, no default password), and that traces and metrics are
wired (Jaeger, Prometheus scrape targets, the Grafana dashboard)."""
import json
import os
import re
from pathlib import Path

import pytest
import typer.main
import yaml

from client.names import SEARCH_ATTRIBUTES
from config.settings import Settings
from devtools.cli import main
from starters.guard import check_startup

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
            return int(host.rpartition(":")[2])
    raise AssertionError(f"port {container_port} not published")


def test_the_services_of_a_production_stack_are_there():
    assert {"postgres", "temporal-schema", "temporal", "temporal-ui", "temporal-setup", "migrate", "worker",
            "api"} <= set(SERVICES)
    assert set(RETAILFLOW) >= {"migrate", "worker", "api"}
    assert SERVICES["worker"]["deploy"]["replicas"] >= 2
    assert env_of(SERVICES["temporal"])["POSTGRES_SEEDS"] == "postgres"


def _tag(image: str) -> str:
    return interpolate(image).rpartition(":")[2]


def test_temporal_is_the_supported_server_image_of_the_line_the_tests_run():
    import subprocess

    from tests.support import temporal_cli

    images = {name: interpolate(s.get("image", "")) for name, s in SERVICES.items()}
    assert not any("auto-setup" in i for i in images.values()), images  # deprecated
    assert images["temporal"].startswith("temporalio/server:")
    version = subprocess.run([temporal_cli(), "--version"], capture_output=True, text=True).stdout
    server_line = re.search(r"Server (\d+\.\d+)\.", version).group(1)  # the dev server the tests run
    assert _tag(images["temporal"]).startswith(server_line + "."), (images["temporal"], version)
    for name in ("temporal-schema", "temporal-setup"):
        assert images[name].startswith("temporalio/admin-tools:") and _tag(images[name]).startswith(server_line)
    schema = "\n".join(SERVICES["temporal-schema"]["command"])
    for db in ("temporal", "temporal_visibility"):
        assert f"--db {db} setup-schema" in schema and f"--db {db} update-schema" in schema
    conditions = {d: r["condition"] for d, r in SERVICES["temporal"]["depends_on"].items()}
    assert conditions == {"temporal-schema": "service_completed_successfully"}
    assert "temporal operator namespace create" in "\n".join(SERVICES["temporal-setup"]["command"])


def test_temporal_frontend_and_ui_are_not_reachable_from_outside():
    assert "ports" not in SERVICES["temporal"], "the Temporal frontend must not be published"
    for mapping in SERVICES["temporal-ui"].get("ports", []):
        assert str(mapping).startswith("127.0.0.1:"), f"UI published beyond loopback: {mapping}"
    assert COMPOSE["networks"]["backend"]["internal"] is True
    for name in ("postgres", "temporal", "temporal-schema", "temporal-setup", "worker", "migrate"):
        assert SERVICES[name]["networks"] == ["backend"], name
        assert "ports" not in SERVICES[name], name
    published = {name for name, s in SERVICES.items() if s.get("ports")}
    assert published == {"api", "temporal-ui", "jaeger", "prometheus", "grafana"}
    for name in ("jaeger", "prometheus", "grafana"):  # what ops watch with: on the host's loopback only
        assert all(str(m).startswith("127.0.0.1:") for m in SERVICES[name]["ports"]), name


def test_ui_write_actions_are_off_unless_ops_switch_them_on():
    env = env_of(SERVICES["temporal-ui"])
    assert interpolate(env["TEMPORAL_DISABLE_WRITE_ACTIONS"]) == "true"  # the UI server's own variable
    assert re.fullmatch(r"\$\{TEMPORAL_UI_DISABLE_WRITE_ACTIONS:-true\}", env["TEMPORAL_DISABLE_WRITE_ACTIONS"])


def _users(url: str) -> str:
    return re.match(r"postgresql\+asyncpg://([^:]+):", url).group(1)


def test_separate_database_roles_and_no_default_password():
    app_url = env_of(SERVICES["api"])["RETAILFLOW_DATABASE_URL"]
    assert _users(app_url) == _users(env_of(SERVICES["worker"])["RETAILFLOW_DATABASE_URL"]) == "retailflow_app"
    assert _users(env_of(SERVICES["migrate"])["RETAILFLOW_DATABASE_URL"]) == "retailflow_owner"
    temporal_env = env_of(SERVICES["temporal"])
    assert temporal_env["POSTGRES_USER"] == "temporal" and env_of(SERVICES["temporal-schema"])["SQL_USER"] == "temporal"
    pg = env_of(SERVICES["postgres"])
    assert pg["POSTGRES_USER"] == "postgres"  # the superuser, which no service connects as
    # every password is required (`${VAR:?message}`): compose refuses to start without it, and has no default
    text = (ROOT / "docker-compose.yml").read_text()
    assert not re.search(r"PASSWORD:-|PWD:-", text), "a password with a default"
    passwords = [pg["POSTGRES_PASSWORD"], pg["RETAILFLOW_DB_OWNER_PASSWORD"], pg["RETAILFLOW_DB_APP_PASSWORD"],
                 pg["TEMPORAL_DB_PASSWORD"], temporal_env["POSTGRES_PWD"], app_url,
                 env_of(SERVICES["temporal-schema"])["SQL_PASSWORD"]]
    for value in passwords:
        assert re.search(r"\$\{\w+:\?[^}]+\}", value), value
    names = {m for v in passwords for m in re.findall(r"\$\{(\w+):\?", v)}
    assert names == {"POSTGRES_PASSWORD", "RETAILFLOW_DB_OWNER_PASSWORD", "RETAILFLOW_DB_APP_PASSWORD",
                     "TEMPORAL_DB_PASSWORD"}


def test_the_roles_script_keeps_the_app_role_off_the_schema():
    volumes = SERVICES["postgres"]["volumes"]
    mounted = [v for v in volumes if "docker-entrypoint-initdb.d" in v]
    assert mounted and mounted[0].startswith("./deploy/postgres/10-roles.sh:")
    script = (ROOT / "deploy/postgres/10-roles.sh").read_text()
    assert "CREATE DATABASE retailflow OWNER retailflow_owner" in script
    assert re.search(r"CREATE ROLE retailflow_app LOGIN PASSWORD :'app_pw' NOSUPERUSER NOCREATEDB NOCREATEROLE", script)
    assert "CREATE DATABASE temporal OWNER temporal" in script
    assert "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO retailflow_app" in script
    assert "ALTER DEFAULT PRIVILEGES FOR ROLE retailflow_owner" in script
    # the app role owns nothing and never gets DDL rights (no ALL, no CREATE, no TRIGGER)
    assert not re.search(r"GRANT (ALL|CREATE|TRIGGER)[^;]*TO retailflow_app", script)
    assert "$RETAILFLOW_DB_APP_PASSWORD" in script and ":'app_pw'" in script  # a psql variable, quoted by psql


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


SECRET = "whsec_c2VjcmV0LW9mLWF0LWxlYXN0LTE2LWJ5dGVz"
SAMPLES = {"RETAILFLOW_WEBHOOK_SECRETS": json.dumps({"web": SECRET}),
           "RETAILFLOW_API_TOKENS": '{"ops-alice": {"token": "t0k3n-of-at-least-16", "scopes": ["read", "ops"]}}',
           "RETAILFLOW_DB_APP_PASSWORD": "app-pw", "RETAILFLOW_DB_OWNER_PASSWORD": "owner-pw",
           "POSTGRES_PASSWORD": "pg-pw", "TEMPORAL_DB_PASSWORD": "temporal-pw"}


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
            assert settings.api_tokens["ops-alice"].token.get_secret_value() == "t0k3n-of-at-least-16"
            assert settings.secrets_for("web") == [SECRET]
        if name == "api":
            check_startup(settings)  # what `retailflow api` checks before it listens on 0.0.0.0
        assert settings.task_queue == "retailflow", name
        assert settings.database_url and settings.database_url.startswith("postgresql+asyncpg://"), name


def test_ports_agree_with_the_contract():
    defaults = Settings()
    assert int(defaults.temporal_address.rsplit(":", 1)[1]) == 7233  # inside the backend network only
    assert host_port(SERVICES["temporal-ui"], 8080) == defaults.temporal_ui_port == 8233
    api_env = env_of(SERVICES["api"])
    assert host_port(SERVICES["api"], int(api_env["RETAILFLOW_HTTP_PORT"])) == defaults.http_port == 8000
    assert api_env["RETAILFLOW_HTTP_HOST"] == "0.0.0.0"
    for service in RETAILFLOW.values():
        assert env_of(service)["RETAILFLOW_TEMPORAL_ADDRESS"] == "temporal:7233"


def test_the_contract_search_attributes_are_registered():
    script = "\n".join(SERVICES["temporal-setup"]["command"])
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
        assert conditions["postgres"] == "service_healthy"
        assert conditions["temporal-setup"] == "service_completed_successfully"  # it waited for SERVING
        assert conditions["migrate"] == "service_completed_successfully"
        assert "healthcheck" in SERVICES[name]
    worker_env = env_of(SERVICES["worker"])
    assert worker_env["RETAILFLOW_METRICS_PORT"] in str(SERVICES["worker"]["healthcheck"]["test"])
    assert "cluster health" in "\n".join(SERVICES["temporal-setup"]["command"])


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
        assert endpoint == "http://jaeger:4318", name  # OTLP/HTTP, what config/tracing.py exports
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

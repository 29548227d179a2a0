#!/usr/bin/env python3
"""Bootstrap retailflow with nothing but Python 3.11+, then run it.

    python3 run.py demo [ARGS]     # the whole local stack with its demo traffic (`retailflow demo`)
    python3 run.py test [ARGS]     # the test suite (`pytest`), e.g. `python3 run.py test -m unit`
    python3 run.py COMMAND [ARGS]  # any other `retailflow` command: dev, worker, check, status, ...

First it makes sure `.venv/` holds exactly the locked dependencies: it creates the virtualenv if missing,
installs `uv` into it and runs `uv sync --frozen --all-groups --compile-bytecode`. The sync is skipped while the
lock file is unchanged (its hash is kept in `.bootstrap-stamp`). Every run then writes the `.pyc` files of the
project's packages that are missing or stale (compileall, ~0.1 s when none is): this machine exports
PYTHONDONTWRITEBYTECODE=1, and without `.pyc` files every worker start, and every new workflow run in the
sandbox, compiles source (issue 19). Standard library only.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = ROOT / ".bootstrap-stamp"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
RECIPE = "2"  # part of the stamp: a change to how the environment is made syncs it again (2: with bytecode)


def say(message: str) -> None:
    print(f"[run.py] {message}", file=sys.stderr, flush=True)


def lock_hash() -> str:
    digest = hashlib.sha256()
    for name in ("uv.lock", "pyproject.toml"):
        digest.update((ROOT / name).read_bytes())
    digest.update(sys.version.split()[0].encode())
    digest.update(RECIPE.encode())
    return digest.hexdigest()


def check(cmd: list[str], **kwargs: object) -> None:
    result = subprocess.run(cmd, cwd=ROOT, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        say(f"failed ({result.returncode}): {' '.join(cmd)}")
        sys.exit(result.returncode)


def bytecode_env() -> dict[str, str]:
    """Our environment, except PYTHONDONTWRITEBYTECODE: the bootstrap is where bytecode is written."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def project_packages() -> list[str]:
    """The packages of the wheel (pyproject.toml), the code every retailflow process imports."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]


def compile_project() -> None:
    """`.pyc` for every project module whose cached bytecode is missing or older than its source."""
    check([str(BIN / "python"), "-m", "compileall", "-q", *project_packages()], env=bytecode_env())


def bootstrap() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - run.py must say so under an older python3
        say(f"retailflow needs Python 3.11 or newer; this is {sys.version.split()[0]}")
        sys.exit(1)
    python = BIN / "python"
    if not python.exists():
        say(f"creating {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = lock_hash()
    if STAMP.exists() and STAMP.read_text().strip() == wanted and (BIN / "retailflow").exists():
        compile_project()
        return
    uv = BIN / "uv"
    if not uv.exists():
        say("installing uv into .venv")
        check([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "uv"])
    say("uv sync --frozen --all-groups --compile-bytecode")
    env = {**bytecode_env(), "UV_PROJECT_ENVIRONMENT": str(VENV), "VIRTUAL_ENV": str(VENV)}
    # the machine's own certificate store, as pip uses: behind a TLS-inspecting proxy uv's built-in roots refuse
    # PyPI ("invalid peer certificate: UnknownIssuer"); UV_NATIVE_TLS is the same switch in uv before 0.9
    env.setdefault("UV_SYSTEM_CERTS", "1")
    env.setdefault("UV_NATIVE_TLS", "1")
    # --inexact keeps uv itself (installed by pip above, not in the lock) in the environment;
    # --compile-bytecode: the libraries' .pyc (the editable project's own are compile_project's)
    check([str(uv), "sync", "--frozen", "--all-groups", "--inexact", "--compile-bytecode"], env=env)
    STAMP.write_text(wanted + "\n")
    compile_project()


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    bootstrap()
    command, args = argv[0], argv[1:]
    if command == "test":
        cmd = [str(BIN / "pytest"), *args]
    elif command == "sync":
        return 0
    else:
        cmd = [str(BIN / "retailflow"), command, *args]
    env = {**os.environ, "VIRTUAL_ENV": str(VENV), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    os.chdir(ROOT)
    if os.name == "nt":
        return subprocess.call(cmd, env=env)
    os.execve(cmd[0], cmd, env)  # the command becomes this process: Ctrl-C and exit codes go straight through
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The newest release named in RELEASES.md as a source tree of its own, and `retailflow` commands run from it.

The upgrade test (tests/test_upgrade.py) starts processes on that tree's worker. The tree is `git archive` of the
release commit, so it works in any full clone (CI included) and leaves the repository untouched (no worktree to
prune after a killed run). Its commands run with this interpreter (the current .venv: the release's code on
today's locked dependencies), with the tree as working directory and first on PYTHONPATH, so `import workflows`
is the release's code; `module_origins` proves it.
"""
import io
import os
import re
import signal
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from devtools.stack import _child_setup

ROOT = Path(__file__).resolve().parents[1]
RELEASES = ROOT / "RELEASES.md"
_ROW = re.compile(r"^\|(?P<cells>.*)\|\s*$")
_SHA = re.compile(r"^[0-9a-f]{40}$")


class ReleaseUnavailable(Exception):
    """The release commit cannot be had here (no git checkout, or a shallow clone without it): skip, not fail."""


@dataclass(frozen=True)
class Release:
    name: str
    commit: str


def newest_release(path: Path = RELEASES) -> Release:
    """The first row of the releases table (the newest release): its name and 40-hex commit."""
    rows = [[cell.strip() for cell in m["cells"].split("|")]
            for m in map(_ROW.match, path.read_text().splitlines()) if m]
    body = [row for row in rows[2:] if any(row)]  # rows[0] is the header, rows[1] the |---| line
    if not rows or [c.lower() for c in rows[0][:2]] != ["release", "commit"] or not body:
        raise ValueError(f"{path}: no releases table with a first row | release | commit | ...")
    name, commit = body[0][0], body[0][1].lower()
    if not _SHA.match(commit):
        raise ValueError(f"{path}: release {name!r} names {commit!r}, not a full 40-hex commit")
    return Release(name=name, commit=commit)


def extract(release: Release, into: Path, repo: Path = ROOT) -> Path:
    """Write the release commit's files into `into` (created); raise ReleaseUnavailable when it cannot be had."""
    def _git(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, timeout=120)

    if _git("rev-parse", "--git-dir").returncode != 0:
        raise ReleaseUnavailable(f"{repo} is not a git checkout: release {release.name} ({release.commit}) "
                                 "cannot be checked out")
    if _git("cat-file", "-e", f"{release.commit}^{{commit}}").returncode != 0:
        shallow = _git("rev-parse", "--is-shallow-repository").stdout.strip() == b"true"
        if shallow:
            raise ReleaseUnavailable(f"shallow clone without release {release.name} ({release.commit}); "
                                     "clone the full branch (git fetch --unshallow) to run the upgrade test")
        raise AssertionError(f"RELEASES.md names release {release.name} = {release.commit}, which is not a "
                             "commit of this repository: a release is a commit of main")
    if _git("merge-base", "--is-ancestor", release.commit, "HEAD").returncode != 0:
        raise AssertionError(f"release {release.name} ({release.commit}) is not an ancestor of HEAD: "
                             "this branch does not descend from the release it would upgrade from")
    archive = _git("archive", "--format=tar", release.commit)
    assert archive.returncode == 0, archive.stderr.decode(errors="replace")
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        # the "data" filter (no absolute paths, links out of the tree or device files) where this Python has it:
        # tarfile filters came in 3.11.4, and Debian 12's python3 is 3.11.2; the archive is our own commit's
        if hasattr(tarfile, "data_filter"):
            tar.extractall(into, filter="data")
        else:
            tar.extractall(into)  # noqa: S202 - git archive of a commit of this repository
    return into


def release_env(tree: Path, bytecode: Path, **settings: str) -> dict[str, str]:
    """The environment for a command of the release: ours without any RETAILFLOW_ variable, the tree first on
    PYTHONPATH, plus `settings` as RETAILFLOW_<NAME> variables.

    Bytecode goes to the private folder `bytecode` (PYTHONPYCACHEPREFIX, nothing written beside any source):
    the first command compiles the release and the .venv's libraries, the others start in half the CPU time
    (on this machine PYTHONDONTWRITEBYTECODE=1 would make each compile everything again)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RETAILFLOW_") and k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join([str(tree), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["PYTHONPYCACHEPREFIX"] = str(bytecode)
    env["PYTHONUNBUFFERED"] = "1"
    env.update({f"RETAILFLOW_{name.upper()}": value for name, value in settings.items()})
    return env


def module_origins(tree: Path, env: dict[str, str], modules: list[str]) -> dict[str, str]:
    """Where `modules` are imported from by a process started like the release's commands; fails unless every
    one is the release tree's file (not the checkout's, which the .venv's editable install also offers)."""
    code = "import importlib, sys\nfor m in sys.argv[1:]: print(m, importlib.import_module(m).__file__)"
    out = subprocess.run([sys.executable, "-c", code, *modules], cwd=tree, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    origins = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    outside = {m: f for m, f in origins.items() if not Path(f).resolve().is_relative_to(tree.resolve())}
    assert set(origins) == set(modules) and not outside, f"not the release's code (outside {tree}): {outside}"
    return origins


def cli_module(tree: Path) -> str:
    """The module that is `retailflow` in `tree` (pyproject's [project.scripts] moved with the layout)."""
    return "devtools.cli" if (tree / "devtools" / "cli.py").is_file() else "starters.cli"


class ReleaseCommand:
    """The release tree's `retailflow ARGS`, output to `log`; stopped like production stops it. The command's
    module is the tree's own: `devtools.cli` since release 3.0 (the layout of issue 20, where `seed` moved to the
    dev tooling), `starters.cli` before."""

    def __init__(self, tree: Path, args: list[str], env: dict[str, str], log: Path) -> None:
        self.tree, self.args, self.env, self.log = tree, args, env, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "ReleaseCommand":
        with open(self.log, "ab") as out:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", cli_module(self.tree), *self.args], cwd=self.tree, env=self.env,
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=_child_setup())  # dies with the test process (Linux)
        return self

    def run(self, within: float = 180.0) -> int:
        """Run to the end (a one-shot command such as `seed`); its exit code."""
        self.start()
        assert self.process is not None
        try:
            return self.process.wait(within)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"`{' '.join(self.args)}` did not finish within {within:.0f} s\n"
                                 + self.tail()) from None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, within: float = 45.0) -> int | None:
        """SIGTERM and wait up to `within` s (the worker gives running activities 20 s); SIGKILL after that.
        Returns the exit code of a graceful stop, None when it had to be killed."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(within)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.process.kill()
            self.process.wait(10)

    def tail(self, lines: int = 60) -> str:
        if not self.log.exists():
            return f"(no log at {self.log})"
        text = self.log.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {' '.join(self.args)} ({self.log}), last {len(text)} lines\n" + "\n".join(text)

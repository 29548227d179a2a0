"""`.pyc` wherever the worker runs (issue 19): the bootstrap writes them, the dev stack lets its children write
and reuse them. Without them every worker start, and every new workflow run in the sandbox, compiles source."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import Settings
from devtools.stack import DevStack

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent


def _run_py():  # noqa: ANN202 - the bootstrap script as a module
    spec = importlib.util.spec_from_file_location("run_py", ROOT / "run.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_dev_stack_children_may_write_bytecode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    env = DevStack(Settings(data_dir=tmp_path)).env()
    assert "PYTHONDONTWRITEBYTECODE" not in env and env["RETAILFLOW_DATA_DIR"] == str(tmp_path)


def test_the_bootstrap_compiles_every_package_of_the_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _run_py()
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    assert "PYTHONDONTWRITEBYTECODE" not in run.bytecode_env()
    packages = run.project_packages()
    assert {"domain", "workflows", "worker", "bench"} <= set(packages)
    # what compile_project runs, on a module of its own: the .pyc appears although the variable is exported
    source = tmp_path / "module.py"
    source.write_text("ANSWER = 42\n")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(source)], env=run.bytecode_env(), check=True)
    assert Path(importlib.util.cache_from_source(str(source))).exists()

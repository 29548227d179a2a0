"""The sandbox passthrough (worker/factory.py) shares one module object between every workflow run of a worker.
That is safe only for modules that define no workflow and keep no mutable module-level state: a passed-through
workflow class would run with the host's modules (no sandbox guard on time, randomness or I/O), and a mutable
global would carry one run's state into the next, which a replay on another worker would not see."""
import dataclasses
import datetime
import decimal
import enum
import importlib
import inspect
import pkgutil
import re
import types
import typing
import warnings

import pytest
from pydantic import BaseModel
from temporalio.common import RetryPolicy

import activities
import adapters
import client
import domain
import workflows
from worker.factory import (
    PASSTHROUGH,
    WORKFLOW_HELPERS,
    frozen_releases,
    passed_through_workflow_modules,
    passthrough_modules,
)

pytestmark = pytest.mark.unit

IMMUTABLE = (type(None), bool, int, float, complex, str, bytes, range, enum.Enum, datetime.date, datetime.time,
             datetime.timedelta, datetime.tzinfo, decimal.Decimal, typing.TypeVar, re.Pattern)
# Mutable objects, reviewed: nothing changes them after the module is imported.
REVIEWED = {RetryPolicy: "the SDK copies it into each activity command and never changes it"}
REVIEWED_NAMES = {("workflows.release_2.return_to_refund", "DISPOSITION_BUCKET"):
                  "a lookup table of a frozen release, only read"}


def immutable(value: object) -> bool:
    if isinstance(value, (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType)):
        return True
    if isinstance(value, IMMUTABLE) or type(value).__module__ == "typing" or isinstance(
            value, (types.GenericAlias, types.UnionType)):
        return True
    if isinstance(value, (tuple, frozenset)):
        return all(immutable(v) for v in value)
    if dataclasses.is_dataclass(value) and type(value).__dataclass_params__.frozen:  # type: ignore[attr-defined]
        return True
    if isinstance(value, BaseModel) and type(value).model_config.get("frozen"):
        return True
    return type(value) in REVIEWED


def mutable_state(module: types.ModuleType) -> list[str]:
    """Module globals that are not immutable, and mutable class attributes of the module's own classes."""
    found = [f"{name} ({type(value).__name__})" for name, value in vars(module).items()
             if not name.startswith("__") and not immutable(value) and (module.__name__, name) not in REVIEWED_NAMES]
    for cls_name, cls in vars(module).items():
        if inspect.isclass(cls) and cls.__module__ == module.__name__:
            found += [f"{cls_name}.{attr} ({type(value).__name__})" for attr, value in vars(cls).items()
                      if not attr.startswith("__") and attr != "model_config"
                      and isinstance(value, (list, dict, set, bytearray))]
    return found


def workflow_classes(module: types.ModuleType) -> list[str]:
    return [name for name, value in vars(module).items()
            if inspect.isclass(value) and value.__module__ == module.__name__
            and hasattr(value, "__temporal_workflow_definition")]


def modules_of(package: types.ModuleType) -> list[str]:
    return [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".") if not m.ispkg]


def test_the_workflow_helpers_and_the_frozen_releases_are_passed_through() -> None:
    names = set(passed_through_workflow_modules())
    assert set(WORKFLOW_HELPERS) <= set(modules_of(workflows)), "a module of WORKFLOW_HELPERS is not in workflows/"
    assert set(passthrough_modules()) >= set(WORKFLOW_HELPERS) | set(frozen_releases())
    assert all(name in names for release in frozen_releases() for name in modules_of(importlib.import_module(release)))


@pytest.mark.parametrize("name", passed_through_workflow_modules())
def test_a_passed_through_workflows_module_has_no_workflow_and_no_mutable_state(name: str) -> None:
    module = importlib.import_module(name)
    assert workflow_classes(module) == [], f"{name} defines a workflow: it must not be passed through"
    assert mutable_state(module) == [], f"{name} would share this state between workflow runs"


@pytest.mark.parametrize("package", [domain, activities, adapters, client], ids=lambda p: p.__name__)
def test_no_passed_through_package_defines_a_workflow(package: types.ModuleType) -> None:
    assert package.__name__ in PASSTHROUGH
    defining = {name: classes for name in modules_of(package)
                if (classes := workflow_classes(importlib.import_module(name)))}
    assert defining == {}, "a workflow class in a passed-through package would escape the sandbox"


def test_every_workflows_module_defines_a_workflow_or_is_passed_through() -> None:
    """Warns (a helper imported afresh for every run costs CPU and memory, it is not wrong): add such a module to
    WORKFLOW_HELPERS once it meets the test above."""
    passed = set(passed_through_workflow_modules())
    kinds = {name: bool(workflow_classes(importlib.import_module(name))) for name in modules_of(workflows)}
    for name, defines in kinds.items():
        if not defines and name not in passed:
            warnings.warn(f"{name} defines no workflow and is not passed through the sandbox "
                          "(worker/factory.py WORKFLOW_HELPERS)", stacklevel=1)
    assert not any(kinds[name] for name in passed) and any(kinds.values())


def test_the_check_sees_mutable_state_and_workflows() -> None:
    module = types.ModuleType("fake_helper")
    module.CACHE = {}  # type: ignore[attr-defined]
    module.LIMIT = datetime.timedelta(seconds=3)  # type: ignore[attr-defined]
    module.ORDER = ("a", 1)  # type: ignore[attr-defined]
    assert mutable_state(module) == ["CACHE (dict)"]
    assert workflow_classes(importlib.import_module("workflows.exception_case")) == ["ExceptionCase"]

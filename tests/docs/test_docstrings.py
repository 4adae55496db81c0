"""The API reference (docs/api.md, generated from the docstrings) cannot drift from the code.

Every constructor argument of the public classes has a ``:param:`` in the class docstring, saying
"Templated." exactly when it is in ``template_fields``; every class and module docs/api.md documents
exists; every public class of the package's main modules is in docs/api.md.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest
from airflow.sdk import BaseOperator

from airflow_cvm_export.emulator import Emulator
from airflow_cvm_export.hooks.cvm import CvmAsyncHook, CvmHook
from airflow_cvm_export.operators.cvm import ExportImagesOperator
from airflow_cvm_export.sensors.cvm import ExportImagesSensor
from airflow_cvm_export.triggers.cvm import ExportImagesTrigger
from airflow_cvm_export.triggers.start import ExportStartTrigger

API_PAGE = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
DIRECTIVE = re.compile(r"^\.\. auto(?:class|function|module|data|attribute):: ([\w.]+)$", re.M)
PARAM = re.compile(r"^\s*:param (\w+):(.*?)(?=^\s*:param |\Z)", re.M | re.S)
PUBLIC_CLASSES = [ExportImagesOperator, ExportImagesSensor, ExportImagesTrigger, ExportStartTrigger, CvmHook, Emulator]


def arguments(cls: type) -> dict[str, inspect.Parameter]:
    """Constructor arguments of ``cls`` and of its own mixins (not Airflow's base classes but ResumableJobMixin)."""
    found: dict[str, inspect.Parameter] = {}
    for klass in reversed(cls.__mro__[:-1]):
        init = klass.__dict__.get("__init__")
        if init is None or (klass.__module__.startswith("airflow.") and klass.__name__ != "ResumableJobMixin"):
            continue
        for name, param in inspect.signature(init).parameters.items():
            if name != "self" and param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                found[name] = param
    return found


def params(cls: type) -> dict[str, str]:
    """The ``:param name: text`` entries of the docstrings of ``cls`` and its own base classes, by name
    (the API reference shows the base class, e.g. the hooks' shared ``CvmClientBase``)."""
    own = [klass for klass in reversed(cls.__mro__) if klass.__module__.startswith("airflow_cvm_export.")]
    text = "\n".join(klass.__doc__ or "" for klass in own)
    return {m[1]: " ".join(m[2].split()) for m in PARAM.finditer(inspect.cleandoc(text))}


@pytest.mark.parametrize("cls", PUBLIC_CLASSES, ids=lambda cls: cls.__name__)
def test_every_argument_has_a_param_in_the_docstring(cls: type) -> None:
    documented = params(cls)
    assert sorted(set(arguments(cls)) - set(documented)) == []
    assert sorted(set(documented) - set(arguments(cls))) == []  # no stale :param:


@pytest.mark.parametrize("cls", [ExportImagesOperator, ExportImagesSensor], ids=lambda cls: cls.__name__)
def test_templated_is_said_exactly_for_the_template_fields(cls: type[BaseOperator]) -> None:
    documented = params(cls)
    said = {name for name, text in documented.items() if "Templated." in text}
    assert said == set(cls.template_fields)


def test_the_async_hook_takes_the_sync_hooks_arguments() -> None:
    """docs/api.md documents CvmAsyncHook by its docstring, which refers to CvmHook's arguments."""
    assert arguments(CvmAsyncHook) == arguments(CvmHook)


def test_every_documented_name_exists() -> None:
    names = DIRECTIVE.findall(API_PAGE)
    assert len(names) > 20
    for name in names:
        module, _, attribute = name.rpartition(".")
        try:
            importlib.import_module(name)
        except ImportError:
            assert hasattr(importlib.import_module(module), attribute), name


@pytest.mark.parametrize(
    "module",
    [
        "airflow_cvm_export.operators.cvm",
        "airflow_cvm_export.sensors.cvm",
        "airflow_cvm_export.triggers.cvm",
        "airflow_cvm_export.triggers.start",
        "airflow_cvm_export.hooks.cvm",
        "airflow_cvm_export.links.cvm",
        "airflow_cvm_export.utils.errors",
        "airflow_cvm_export.mixins",
    ],
)
def test_every_public_class_is_in_the_reference(module: str) -> None:
    documented = set(DIRECTIVE.findall(API_PAGE))
    loaded = importlib.import_module(module)
    classes = [
        f"{module}.{name}"
        for name, obj in vars(loaded).items()
        if inspect.isclass(obj) and obj.__module__ == module and not name.startswith("_")
    ]
    assert classes
    whole_module = module in documented
    assert whole_module or sorted(c for c in classes if c not in documented) == []

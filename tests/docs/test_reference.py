"""The README's reference tables cannot drift: every constructor argument has a row with default and templating."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from airflow_cvm_export.hooks.cvm import CvmHook
from airflow_cvm_export.operators.cvm import ExportImagesOperator
from airflow_cvm_export.sensors.cvm import ExportImagesSensor
from airflow_cvm_export.triggers.cvm import ExportImagesTrigger

REFERENCE = Path(__file__).resolve().parents[2] / "README.md"
ROW = re.compile(r"^\| `(?P<name>\w+)` \| (?P<type>.+?) \| (?P<default>.+?) \| (?P<templated>yes|no) \| .+ \|$")


def documented(cls: type) -> dict[str, dict[str, str]]:
    """The argument rows of ``cls``'s section: name -> {"type", "default", "templated"}."""
    section = re.split(r"\n##+ ", REFERENCE.read_text().split(f"\n### {cls.__name__}\n", 1)[1], maxsplit=1)[0]
    return {m["name"]: m.groupdict() for m in map(ROW.match, section.splitlines()) if m}


def arguments(cls: type) -> dict[str, inspect.Parameter]:
    """Constructor arguments of ``cls`` and of its mixins below ``BaseOperator``/``BaseHook``/``BaseTrigger``."""
    found: dict[str, inspect.Parameter] = {}
    for klass in reversed(cls.__mro__[:-1]):
        init = klass.__dict__.get("__init__")
        if init is None or (klass.__module__.startswith("airflow.") and klass.__name__ != "ResumableJobMixin"):
            continue
        for name, param in inspect.signature(init).parameters.items():
            if name != "self" and param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                found[name] = param
    return found


def shown(default: Any) -> str:
    return "required" if default is inspect.Parameter.empty else f"`{default!r}`".replace("'", '"')


@pytest.mark.parametrize("cls", [ExportImagesOperator, ExportImagesSensor, ExportImagesTrigger, CvmHook])
def test_every_argument_documented_with_its_default_and_templating(cls: type) -> None:
    rows, params = documented(cls), arguments(cls)
    assert sorted(rows) == sorted(params)
    templated = set(getattr(cls, "template_fields", ()))
    for name, param in params.items():
        row = rows[name]
        assert row["templated"] == ("yes" if name in templated else "no"), name
        if name == "deferrable":  # from [operators] default_deferrable at import time
            assert "default_deferrable" in row["default"]
        else:
            assert row["default"] == shown(param.default), name


def test_every_templated_field_is_an_argument() -> None:
    for cls in (ExportImagesOperator, ExportImagesSensor):
        assert set(cls.template_fields) <= set(arguments(cls))

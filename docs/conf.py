"""Sphinx configuration of the airflow-cvm-export documentation (``make docs``).

The pages are MyST Markdown; the API reference is generated from the docstrings (autodoc). Built
with ``-W --keep-going -n``: every warning fails the build, every cross-reference must resolve, and
MyST checks every internal link and ``#anchor`` (external links are not fetched: no network here).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from airflow_cvm_export import __version__  # noqa: E402

project = "airflow-cvm-export"
author = "airflow-cvm-export contributors"
copyright = "2026, airflow-cvm-export contributors"  # noqa: A001
release = version = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "examples", "snippets", "README.md"]

# Markdown: heading anchors for [text](page.md#heading) links, checked at build time.
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence", "deflist"]
suppress_warnings: list[str] = []

# API reference: signatures with their type hints, members in source order.
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": True}
autodoc_preserve_defaults = True

# Every cross-reference must resolve (-n). Those into other projects cannot: their inventories
# are not reachable offline (no intersphinx), so they are listed here by package, nothing of ours.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(airflow|airflow_cvm_export\.version_compat|requests|httpx|urllib3)\..*"),
    (r"py:.*", r"(asyncio|_asyncio|datetime|enum)\..*"),
    (r"py:.*", r"(collections\.abc|typing|types|pathlib|concurrent\.futures)\..*"),
    (r"py:.*", r"(Any|Mapping|Sequence|Iterator|AsyncIterator|Callable|Iterable|Self|TypedDict|NotRequired)"),
    (r"py:.*", r"(Context|BaseOperator|BaseHook|BaseTrigger|TriggerEvent|OperatorLineage|OperatorPartial|Connection|XComArg)"),
    (r"py:.*", r"(Path|Enum|StrEnum|ValueError|Exception|dict|list|str|int|float|bool|None|bytes|tuple)"),
    (r"py:.*", r"(Logger|logging\..*|PokeReturnValue|_pytest\..*|pytest\..*)"),
    # Builtin generics in string annotations that autodoc cannot evaluate, split at their commas.
    (r"py:class", r"(dict|list|tuple|set)\[.*"),
]

html_theme = "furo"
html_title = f"airflow-cvm-export {release}"
html_static_path: list[str] = []

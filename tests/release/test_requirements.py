"""setup.cfg declares what the package imports: each third-party import is in ``install_requires``."""

from __future__ import annotations

import ast
import configparser
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "airflow_cvm_export"
# Imported only where its host provides it: the pytest plugin runs inside pytest; the hook's
# get_connection_form_widgets inside Airflow 3.1's api-server (its own stand-ins for the form modules).
IMPORTED_BY_ITS_HOST = {"pytest", "flask_appbuilder", "flask_babel", "wtforms"}
# ``airflow`` is installed by several distributions; the one to declare is the apache-airflow meta-package.
DECLARED_AS = {"airflow": {"apache-airflow"}}


def imported_top_level_modules() -> set[str]:
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.partition(".")[0])
    return names - set(sys.stdlib_module_names) - {PACKAGE.name} - IMPORTED_BY_ITS_HOST


def declared() -> set[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options"]["install_requires"].splitlines()
    return {re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0].lower() for line in lines if line.strip()}


def test_every_third_party_import_is_declared() -> None:
    distributions = packages_distributions()
    needed = {
        module: DECLARED_AS.get(module) or {d.lower() for d in distributions.get(module, [module])}
        for module in imported_top_level_modules()
    }
    missing = {module: sorted(dists) for module, dists in needed.items() if not dists & declared()}
    assert not missing, f"imported but not in setup.cfg's install_requires: {missing}"

"""The documentation site in the browser the UI tests use: the built index and operator pages render
(navigation, the included snippet, the API reference link) and are what docs/img shows
(``make screenshots`` renews docs-index.png and docs-operator.png)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.ui
DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built as ``make docs`` builds it, into a scratch folder."""
    out = tmp_path_factory.mktemp("docs-html")
    build = [sys.executable, "-m", "sphinx", "-q", "-W", "--keep-going", "-n", "-b", "html", str(DOCS), str(out)]
    done = subprocess.run(build, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_index_and_operator_pages(site: Path, browser: Any, screenshot: Callable[..., Path]) -> None:
    tab = browser.new_page()
    try:
        tab.goto((site / "index.html").as_uri())
        assert tab.title().startswith("airflow-cvm-export")
        for caption in ("Using the provider", "Testing and running it", "Reference"):
            assert tab.get_by_text(caption, exact=True).first.is_visible()
        screenshot(tab, "docs-index")

        tab.get_by_role("link", name="Starting an export: ExportImagesOperator").first.click()
        tab.wait_for_url("**/operator.html")
        code = tab.locator("div.highlight-python pre").first
        assert "ExportImagesOperator(" in code.inner_text()  # included from docs/snippets/dags
        assert tab.get_by_role("link", name="API reference").first.is_visible()
        screenshot(tab, "docs-operator")
    finally:
        tab.close()

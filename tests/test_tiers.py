"""Every test folder belongs to exactly one of the Makefile's test tiers, so ``make test`` runs it."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
MAKEFILE = TESTS.parent / "Makefile"
TIERS = ("UNIT_TESTS", "EMULATOR_TESTS", "E2E_TESTS", "RELEASE_TESTS", "UI_TESTS", "SYSTEM_TESTS")


def tier_paths() -> dict[str, list[str]]:
    """``{variable: paths}`` of the Makefile's ``*_TESTS :=`` lines."""
    found = dict(re.findall(r"^([A-Z0-9_]+_TESTS) := (.*)$", MAKEFILE.read_text(), re.M))
    return {name: found[name].split() for name in TIERS}


def test_every_test_folder_is_in_exactly_one_tier() -> None:
    tiers = tier_paths()
    listed = [path for paths in tiers.values() for path in paths]
    assert len(listed) == len(set(listed)), f"a path is in two tiers: {tiers}"
    folders = {
        f"tests/{path.parent.relative_to(TESTS).parts[0]}"
        for path in TESTS.rglob("test_*.py")
        if path.parent != TESTS and "__pycache__" not in path.parts
    }
    missing = sorted(folders - set(listed))
    assert not missing, f"test folders in no tier of the Makefile (add them to one of {', '.join(TIERS)}): {missing}"
    assert all((TESTS.parent / path).exists() for path in listed), listed

"""bounded_json.loads: the nesting bound, with and without the bracket-count shortcut."""

from __future__ import annotations

import json

import pytest

from airflow_cvm_export.utils import bounded_json
from airflow_cvm_export.utils.bounded_json import MAX_DEPTH, JsonTooDeepError


@pytest.mark.parametrize("as_bytes", [False, True])
def test_exactly_max_depth_passes_and_one_more_is_refused(as_bytes):
    at_limit = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    too_deep = '{"a": ' + at_limit + "}"
    encode = str.encode if as_bytes else str
    assert bounded_json.loads(encode(at_limit)) is not None
    with pytest.raises(JsonTooDeepError, match=f"deeper than {MAX_DEPTH}"):
        bounded_json.loads(encode(too_deep))


def test_wide_documents_with_many_brackets_are_walked_and_pass():
    wide = [{"Name": f"tag:{i}", "Values": [str(i)]} for i in range(50)]  # 100 brackets, depth 3
    assert bounded_json.loads(json.dumps(wide)) == wide


def test_brackets_inside_strings_only_cost_the_walk():
    text = json.dumps({"ImageName": "[" * 200})
    assert bounded_json.loads(text) == {"ImageName": "[" * 200}


def test_very_deep_text_raises_value_error_not_recursion_error():
    with pytest.raises(ValueError, match="deeper than"):
        bounded_json.loads("[" * 100_000 + "]" * 100_000)

"""The hostile-input suite covers arguments, templated values, connections and raw HTTP: 150 cases at least."""

from __future__ import annotations

from tests.reliability.test_bad_input import CONSTRUCTOR_CASES, OPERATOR_CASES, SENSOR_CASES, TEMPLATED_CASES
from tests.security.test_connection_input import CONNECTION_CASES
from tests.security.test_emulator_http import SIGNED_CASES, TRANSPORT_CASES


def test_the_hostile_input_suite_has_at_least_150_cases() -> None:
    sizes = {
        "operator arguments": len(OPERATOR_CASES) + len(CONSTRUCTOR_CASES),
        "sensor arguments": len(SENSOR_CASES),
        "templated values (text and native)": 2 * len(TEMPLATED_CASES),
        "connection fields and extras": len(CONNECTION_CASES),
        "raw HTTP to the emulator": len(TRANSPORT_CASES) + len(SIGNED_CASES),
    }
    assert all(sizes.values()) and sum(sizes.values()) >= 150, sizes

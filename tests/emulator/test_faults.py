"""Rate limits and seeded fault injection."""

from __future__ import annotations

import json

import pytest
import requests

from airflow_cvm_export.emulator.catalog import WRITABLE_BUCKETS
from airflow_cvm_export.emulator.faults import DEFAULT_RATE_LIMITS, FaultInjector

EXPORT = {"ImageIds": ["img-centos01"], "BucketName": WRITABLE_BUCKETS[0]}


def test_documented_rate_limits_are_the_default(client):
    assert DEFAULT_RATE_LIMITS == {"ExportImages": 20, "DescribeImages": 40}
    assert client.emu.cvm.limiter.limits == DEFAULT_RATE_LIMITS


def test_rate_limit_answers_request_limit_exceeded(start_emulator):
    client = start_emulator(rate_limits={"DescribeImages": 2})
    codes = [client.call("DescribeImages").get("Error", {}).get("Code", "ok") for _ in range(20)]
    assert "RequestLimitExceeded" in codes and "ok" in codes
    assert client.emu.state()["requests"]["DescribeImages"]["RequestLimitExceeded"] == codes.count(
        "RequestLimitExceeded"
    )
    assert all("Error" not in client.call("DescribeRegions") for _ in range(20))  # not limited


def test_rate_limits_can_be_switched_off(start_emulator):
    client = start_emulator(rate_limits={})
    assert all("Error" not in client.call("DescribeImages") for _ in range(60))


def _post(client, action: str, params: dict) -> requests.Response:
    body = json.dumps(params).encode()
    return client.post(client.signed_headers(action, body), body)


def test_drop_before_has_no_effect(start_emulator):
    client = start_emulator(fault_rate=1.0, fault_kinds=["drop_before"])
    with pytest.raises(requests.ConnectionError):
        _post(client, "ExportImages", EXPORT)
    state = client.emu.state()
    assert state["exports"] == []
    assert state["requests"] == {"ExportImages": {"fault:drop_before": 1}}


def test_drop_after_takes_effect(start_emulator):
    client = start_emulator(fault_rate=1.0, fault_kinds=["drop_after"])
    with pytest.raises(requests.ConnectionError):
        _post(client, "ExportImages", EXPORT)
    state = client.emu.state()
    assert [e["ImageIds"] for e in state["exports"]] == [["img-centos01"]]
    assert state["requests"] == {"ExportImages": {"fault:drop_after": 1}}


@pytest.mark.parametrize(("kind", "code"), [("throttle", "RequestLimitExceeded"), ("internal", "InternalError")])
def test_error_faults(start_emulator, kind, code):
    client = start_emulator(fault_rate=1.0, fault_kinds=[kind])
    assert client.error("ExportImages", EXPORT) == code
    assert client.emu.state()["exports"] == []


def test_http5xx_fault(start_emulator):
    client = start_emulator(fault_rate=1.0, fault_kinds=["http5xx"])
    response = _post(client, "DescribeImages", {})
    assert response.status_code == 502 and response.headers["Content-Type"] == "text/html"
    cos = client.cos("HEAD", WRITABLE_BUCKETS[0], "x")
    assert cos.status_code == 502
    assert client.emu.state()["requests"]["COS HEAD"] == {"fault:http5xx": 1}


def test_slow_fault_still_answers(start_emulator):
    client = start_emulator(fault_rate=1.0, fault_kinds=["slow"])
    assert "TaskId" in client.call("ExportImages", EXPORT)
    assert client.emu.state()["requests"]["ExportImages"] == {"fault:slow": 1}


def test_cos_faults(start_emulator):
    client = start_emulator(fault_rate=1.0, fault_kinds=["throttle"])
    assert client.cos("GET", WRITABLE_BUCKETS[0]).status_code == 503


def test_faults_are_seeded_and_spare_emulator_endpoints(start_emulator):
    runs = []
    for _ in range(2):
        client = start_emulator(fault_rate=0.5, seed=7, fault_kinds=["throttle", "internal"])
        runs.append([client.call("DescribeRegions").get("Error", {}).get("Code") for _ in range(30)])
        for _ in range(5):
            assert client.session.get(client.emu.url + "/_emulator/state", timeout=10).status_code == 200
    assert runs[0] == runs[1]
    assert {None, "RequestLimitExceeded", "InternalError"} == set(runs[0])


def test_unknown_fault_kind_is_refused():
    with pytest.raises(ValueError):
        FaultInjector(0.5, 0, ["meteor"])

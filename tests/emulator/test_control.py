"""Control for tests: progression modes, runtime fault rules, reset, and user mistakes mid-run,
from Python and over HTTP (``/_emulator/*``)."""

from __future__ import annotations

import time

import pytest

from airflow_cvm_export.emulator.catalog import WRITABLE_BUCKETS
from airflow_cvm_export.emulator.cvm.models import EXPORT_FAILED_STATE

BUCKET = WRITABLE_BUCKETS[0]


def _control(client, method: str, path: str, json=None):
    return client.session.request(method, client.emu.url + "/_emulator/" + path, json=json, timeout=10)


def _heads(client, paths: list[str]) -> list[int]:
    return [client.cos("HEAD", BUCKET, path.lstrip("/")).status_code for path in paths]


def _image_state(client, image_id: str) -> str | None:
    found = client.call("DescribeImages", {"ImageIds": [image_id]})["ImageSet"]
    return found[0]["ImageState"] if found else None


def test_manual_progression_moves_only_when_told(start_emulator):
    client = start_emulator(progression="manual", export_seconds=0.01)
    answer = client.export(["img-ubuntu01"])  # three disks
    time.sleep(0.05)  # far past export_seconds: nothing happens by time
    [export] = client.emu.state()["exports"]
    assert (export["status"], export["progression"], export["written"]) == ("running", "manual", 0)
    [moved] = client.emu.advance(answer["TaskId"])
    assert moved["written"] == 1 and _heads(client, answer["CosPaths"]) == [200, 404, 404]
    [moved] = client.emu.advance(objects=5)
    assert (moved["status"], moved["written"]) == ("succeeded", 3)
    assert _heads(client, answer["CosPaths"]) == [200, 200, 200]


def test_finish_now_and_failed(start_emulator):
    client = start_emulator(progression="manual")
    first = client.export(["img-centos01"])["TaskId"]
    second = client.export(["img-centos02"])["TaskId"]
    [done] = client.emu.finish(first)
    assert done["status"] == "succeeded"
    assert client.emu.finish(first) == []  # already finished
    [failed] = client.emu.finish(second, failed=True)
    assert failed["status"] == "failed" and _image_state(client, "img-centos02") == EXPORT_FAILED_STATE
    with pytest.raises(KeyError):
        client.emu.finish(1)


def test_immediate_progression(start_emulator):
    client = start_emulator(progression="immediate")
    answer = client.export(["img-centos02"])
    assert client.emu.state()["exports"][0]["status"] == "succeeded"
    assert _heads(client, answer["CosPaths"]) == [200, 200]
    assert "TaskId" in client.export(["img-centos02"])  # the image is free again at once


def test_busy_image_and_full_queue_stay_reachable(start_emulator):
    client = start_emulator(progression="manual", max_running_exports=1)
    client.export(["img-centos01"])
    assert client.error("ExportImages", {"ImageIds": ["img-centos01"], "BucketName": BUCKET}) == (
        "InvalidParameterValue.InvalidImageState"
    )
    assert client.error("ExportImages", {"ImageIds": ["img-centos02"], "BucketName": BUCKET}) == (
        "LimitExceeded.ExportImageTaskLimitExceeded"
    )
    client.emu.finish()
    assert "TaskId" in client.export(["img-centos02"])


def test_progression_over_http(client):
    assert _control(client, "POST", "progression", {"progression": "manual"}).json() == {"progression": "manual"}
    answer = client.export(["img-centos02"])
    advanced = _control(client, "POST", "exports/advance", {"TaskId": answer["TaskId"]}).json()
    assert advanced["exports"][0]["written"] == 1
    finished = _control(client, "POST", "exports/finish", {}).json()
    assert finished["exports"][0]["status"] == "succeeded"
    assert _control(client, "POST", "exports/finish", {"TaskId": 7}).status_code == 404
    bad = _control(client, "POST", "progression", {"progression": "fast"})
    assert bad.status_code == 400 and "time, manual, immediate" in bad.json()["error"]
    assert _control(client, "POST", "exports/advance", {"objects": 0}).status_code == 400


def test_fault_rules_per_action_with_count(client):
    rule = _control(client, "POST", "faults", {"action": "ExportImages", "kinds": ["throttle"], "count": 2}).json()
    assert rule["rules"][0]["count"] == 2
    params = {"ImageIds": ["img-centos01"], "BucketName": BUCKET}
    assert [client.error("ExportImages", params) for _ in range(2)] == ["RequestLimitExceeded"] * 2
    assert client.call("DescribeRegions")["TotalCount"] > 0  # another action is spared
    assert "TaskId" in client.call("ExportImages", params)  # the count is used up
    assert _control(client, "GET", "faults").json() == {"rules": []}
    assert client.emu.state()["requests"]["ExportImages"] == {"fault:throttle": 2, "ok": 1}


def test_fault_rules_per_service_and_clear(client):
    client.emu.add_fault(["internal"], service="cos")
    assert client.cos("GET", BUCKET).status_code == 500
    assert client.call("DescribeRegions")["TotalCount"] > 0
    assert _control(client, "DELETE", "faults").json() == {"rules": []}
    assert client.cos("GET", BUCKET).status_code == 200


def test_latency_rule(client):
    client.emu.add_fault(action="DescribeRegions", latency=0.3, count=1)
    began = time.monotonic()
    assert client.call("DescribeRegions")["TotalCount"] > 0
    assert time.monotonic() - began >= 0.3
    assert client.emu.state()["requests"]["DescribeRegions"] == {"fault:latency": 1}


def test_fault_rule_rate_is_seeded(start_emulator):
    runs = []
    for _ in range(2):
        client = start_emulator(seed=5)
        client.emu.add_fault("internal", action="DescribeRegions", rate=0.5)
        runs.append([client.call("DescribeRegions").get("Error", {}).get("Code") for _ in range(20)])
    assert runs[0] == runs[1] and {None, "InternalError"} == set(runs[0])


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"kinds": ["explode"]}, "kinds"),
        ({"kinds": ["throttle"], "rate": 2}, "rate"),
        ({"kinds": ["throttle"], "count": 0}, "count"),
        ({"kinds": ["throttle"], "service": "cbs"}, "service"),
        ({"latency": -1}, "latency"),
        ({"kinds": ["throttle"], "actoin": "ExportImages"}, "unknown fault rule fields"),
        ({}, "needs kinds"),
    ],
)
def test_bad_fault_rules_are_refused_naming_the_field(client, rule, field):
    answer = _control(client, "POST", "faults", rule)
    assert answer.status_code == 400 and field in answer.json()["error"]
    assert client.emu.state()["faults"] == []


def test_reset(start_emulator):
    client = start_emulator(progression="manual")
    first = client.export(["img-centos01"])["TaskId"]
    client.emu.delete_image("img-ubuntu02")
    client.emu.add_fault("throttle", service="cos")
    state = _control(client, "POST", "reset", {"progression": "immediate"}).json()
    assert (state["exports"], state["requests"], state["faults"], state["deleted_images"]) == ([], {}, [], [])
    assert state["progression"] == "immediate"
    assert client.export(["img-centos01"])["TaskId"] > first  # TaskIds are never given twice
    assert _image_state(client, "img-ubuntu02") == "NORMAL"
    client.emu.reset()
    assert client.emu.progression == "manual"  # as constructed
    assert client.cos("GET", BUCKET).content.count(b"<Key>") == 0


def test_delete_image_mid_run(start_emulator):
    client = start_emulator(progression="manual")
    answer = client.export(["img-ubuntu01"])
    client.emu.advance()
    assert _control(client, "DELETE", "images/img-ubuntu01").json() == {"deleted": "img-ubuntu01"}
    [export] = client.emu.state()["exports"]
    assert (export["status"], export["written"]) == ("failed", 1)
    assert _heads(client, answer["CosPaths"]) == [200, 404, 404]  # what was written stays
    assert _image_state(client, "img-ubuntu01") is None
    assert client.error("ExportImages", {"ImageIds": ["img-ubuntu01"], "BucketName": BUCKET}) == (
        "InvalidImageId.NotFound"
    )
    assert _control(client, "DELETE", "images/img-nothing1").status_code == 404


def test_delete_and_put_objects_mid_run(start_emulator):
    client = start_emulator(progression="immediate")
    answer = client.export(["img-centos02"])
    key = answer["CosPaths"][0].lstrip("/")
    assert _control(client, "DELETE", f"objects/{BUCKET}/{key}").json() == {"deleted": True}
    assert _heads(client, answer["CosPaths"]) == [404, 200]
    put = client.session.put(f"{client.emu.url}/_emulator/objects/{BUCKET}/someone/else.raw", data=b"x", timeout=10)
    assert put.json()["Size"] == 1 and client.cos("GET", BUCKET, "someone/else.raw").content == b"x"
    assert _control(client, "DELETE", "objects/nosuch-1250000000/x").status_code == 404


def test_unknown_endpoint_and_method(client):
    assert _control(client, "GET", "nothing").status_code == 404
    assert _control(client, "PUT", "state").status_code == 405


def test_cos_clock_offset_skews_cos_only(start_emulator):
    """A COS clock off the true time: COS answers' ``Date`` and the objects' ``Last-Modified`` show it,
    API 3.0 answers keep the true time; settable over HTTP, reset to what was constructed."""
    from email.utils import parsedate_to_datetime

    def date(response) -> float:
        return parsedate_to_datetime(response.headers["Date"]).timestamp()

    client = start_emulator(progression="immediate", cos_clock_offset=-120)
    assert client.emu.state()["cos_clock_offset"] == -120
    [path] = client.export(["img-centos01"])["CosPaths"]
    head = client.cos("HEAD", BUCKET, path.lstrip("/"))
    assert head.status_code == 200
    assert abs(date(head) - (time.time() - 120)) < 2
    assert abs(parsedate_to_datetime(head.headers["Last-Modified"]).timestamp() - (time.time() - 120)) < 2
    assert abs(date(client.cos("GET", BUCKET, "no-such-key")) - (time.time() - 120)) < 2  # errors too
    api = client.session.post(client.emu.url, data=b"{}", timeout=10)
    assert abs(date(api) - time.time()) < 2

    assert _control(client, "POST", "clock", {"cos_clock_offset": 30}).json() == {"cos_clock_offset": 30.0}
    assert abs(date(client.cos("GET", BUCKET)) - (time.time() + 30)) < 2
    bad = _control(client, "POST", "clock", {"cos_clock_offset": "soon"})
    assert bad.status_code == 400 and "cos_clock_offset must be a number" in bad.json()["error"]
    assert _control(client, "POST", "clock", {}).status_code == 400
    client.emu.reset()
    assert client.emu.cos_clock_offset == -120  # as constructed

"""``/_emulator/*`` documents, the catalog constants, keep-alive, and the CLI."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys

import pytest
import requests

from airflow_cvm_export.emulator import Emulator, catalog


def test_catalog_document(client):
    document = client.session.get(client.emu.url + "/_emulator/catalog", timeout=10).json()
    assert document == client.emu.catalog()
    assert set(document) == {"images", "buckets"}
    assert all(set(entry) == {"ImageId", "Region", "triggers", "Tags"} for entry in document["images"])
    assert all(set(entry) == {"BucketName", "Region", "triggers"} for entry in document["buckets"])
    exportable = [i for i in document["images"] if i["triggers"] == "exportable"]
    writable = [b for b in document["buckets"] if b["triggers"] == "writable"]
    assert len(exportable) >= 5 and len(writable) >= 2
    assert {i["Region"] for i in exportable} | {b["Region"] for b in writable} == {catalog.REGION}
    assert [i["ImageId"] for i in exportable] == list(catalog.EXPORTABLE_IMAGE_IDS)
    assert [b["BucketName"] for b in writable] == list(catalog.WRITABLE_BUCKETS)
    assert all(catalog.IMAGE_ID_RE.match(i["ImageId"]) for i in document["images"])


def test_state_document(client):
    client.export(["img-centos01"])
    client.cos("HEAD", catalog.WRITABLE_BUCKETS[0], "x")
    client.cos("GET", catalog.WRITABLE_BUCKETS[0])
    state = client.session.get(client.emu.url + "/_emulator/state", timeout=10).json()
    [export] = state["exports"]
    assert set(export) == {"TaskId", "ImageIds", "BucketName", "CosPaths", "status", "progression", "written"}
    assert export["status"] in ("running", "succeeded") and export["progression"] == "time"
    assert set(state) == {
        "exports",
        "requests",
        "progression",
        "faults",
        "deleted_images",
        "cos_clock_offset",
        "credential_lifetime",
        "cam_role",
    }
    assert state["requests"] == {"ExportImages": {"ok": 1}, "COS HEAD": {"NoSuchKey": 1}, "COS LIST": {"ok": 1}}
    client.emu.reset_counters()
    assert client.emu.state()["requests"] == {}


def test_unknown_emulator_endpoint(client):
    assert client.session.get(client.emu.url + "/_emulator/nothing", timeout=10).status_code == 404


def test_keep_alive_serves_many_requests_on_one_connection(client):
    conn = http.client.HTTPConnection(client.host, timeout=10)
    for _ in range(5):
        conn.request("GET", "/_emulator/catalog")
        response = conn.getresponse()
        assert response.status == 200 and response.getheader("Connection") == "keep-alive"
        json.loads(response.read())
    conn.close()


def test_stop_closes_idle_connections():
    emu = Emulator().start()
    session = requests.Session()
    assert session.get(emu.url + "/_emulator/state", timeout=10).status_code == 200
    emu.stop()
    with pytest.raises(requests.ConnectionError):
        session.get(emu.url + "/_emulator/state", timeout=2)


def test_cli_prints_url_first_and_stops_on_sigterm():
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_cvm_export.emulator",
            "--port",
            "0",
            "--extra-images",
            "2",
            "--export-seconds",
            "0.5",
            "--seed",
            "3",
            "--progression",
            "manual",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "0"},
    )
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        images = requests.get(url + "/_emulator/catalog", timeout=10).json()["images"]
        assert catalog.extra_image_id(2) in {i["ImageId"] for i in images}
        assert requests.get(url + "/_emulator/state", timeout=10).json()["progression"] == "manual"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()

"""The provider in the Airflow UI, as a new user meets it, in a real browser against a real api-server.

The connection form and its Test button, the ad-hoc DAG's trigger form (a good and a bad value),
the run it starts, the deferred wait's log and both console links of each task.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_cvm_export.emulator.catalog import REGION, WRITABLE_BUCKETS
from tests.credentials import SECRET_ID, SECRET_KEY
from tests.ui.conftest import Airflow, wait_until

pytestmark = pytest.mark.ui

DAG_ID = "cvm_export_adhoc"
BUCKET = WRITABLE_BUCKETS[0]
IMAGE_ID = "img-centos02"  # two disks: two objects
CONSOLE = f"https://console.cloud.tencent.com/cos/bucket?bucket={BUCKET}&region={REGION}"
RUN_TIMEOUT = 180
EXTRAS = {  # label: description, as get_provider_info() defines them
    "Region": "Default region of API calls",
    "API endpoint": "Override of https://cvm.tencentcloudapi.com",
    "COS endpoint": "Path-style COS endpoint override",
    "Session token": "Token of temporary credentials",
    "Allow plain http": "Allow http to a non-loopback endpoint",
    "Rate limits": "Requests per second per action",
}


def _trigger_form(page: Any, airflow: Airflow) -> Any:
    page.goto(f"{airflow.url}/dags/{DAG_ID}")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    dialog.locator("#element_image_ids").wait_for()
    return dialog


def _submit(dialog: Any) -> Any:
    """Press the form's Trigger button; return the POST's response."""
    with dialog.page.expect_response(lambda r: r.url.endswith(f"/dags/{DAG_ID}/dagRuns")) as response:
        dialog.get_by_role("button", name="Trigger").last.click()
    return response.value


def test_connection_form_and_test_button(page: Any, airflow: Airflow, screenshot: Callable[..., Path]) -> None:
    page.goto(f"{airflow.url}/connections")
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    dialog.locator("input").first.fill("tencentcloud_ui")
    dialog.get_by_role("combobox").first.click()
    page.keyboard.type("Tencent Cloud")
    page.keyboard.press("Enter")
    # Standard fields: SecretId/SecretKey labels; Host, Port and Schema hidden.
    dialog.get_by_label("SecretId").fill(SECRET_ID)
    dialog.get_by_label("SecretKey").fill(SECRET_KEY)
    screenshot(page, "connection-form")
    labels = {label.strip().rstrip("*").strip() for label in dialog.locator("label").all_inner_texts()}
    assert {"SecretId", "SecretKey"} <= labels and not {"Host", "Port", "Schema", "Login", "Password"} & labels
    # Every extra has its own field, with its description.
    dialog.get_by_role("button", name="Extra Fields", exact=True).click()
    for label, description in EXTRAS.items():
        assert label in labels
        assert dialog.get_by_text(description).first.is_visible()
    dialog.locator("#element_region").fill(REGION)
    dialog.locator("#element_endpoint").fill(airflow.emulator.url)
    screenshot(page, "connection-extras")
    dialog.get_by_role("button", name="Save").click()
    stored = wait_until("the saved connection", lambda: _connection(airflow, "tencentcloud_ui"), 30)
    assert stored["login"] == SECRET_ID and json.loads(stored["extra"])["endpoint"] == airflow.emulator.url

    row = page.get_by_role("row").filter(has_text="tencentcloud_ui")
    # Airflow 3.3.2's Test button sends port 0 for the hidden Port field; the api-server then refuses to
    # test the stored credentials (apache/airflow#73298 fixes it upstream). This fails once Airflow does.
    with page.expect_response("**/api/v2/connections/test") as refused:
        row.get_by_role("button", name="Test Connection").click()
    assert refused.value.status == 400
    assert "differs from the stored connection" in refused.value.json()["detail"]
    assert json.loads(refused.value.request.post_data)["port"] == 0

    # The same request with the hidden port left empty, as the fix sends it: the provider's own test.
    def port_unset(route: Any) -> None:
        route.continue_(post_data=json.dumps({**json.loads(route.request.post_data), "port": None}))

    page.route("**/api/v2/connections/test", port_unset)
    with page.expect_response("**/api/v2/connections/test") as tested:
        row.get_by_role("button", name="Test Connection").click()
    assert tested.value.status == 200, tested.value.text()
    assert tested.value.json() == {"status": True, "message": "Connection OK: 8 regions visible"}
    page.get_by_text("Connection OK: 8 regions visible").wait_for()
    screenshot(page, "connection-test")


def _connection(airflow: Airflow, conn_id: str) -> dict[str, Any] | None:
    response = airflow.api.get(f"{airflow.url}/api/v2/connections/{conn_id}", timeout=10)
    return response.json() if response.status_code == 200 else None


def test_trigger_form_names_the_wrong_field(page: Any, airflow: Airflow, screenshot: Callable[..., Path]) -> None:
    dialog = _trigger_form(page, airflow)
    labels = dialog.locator("label").all_inner_texts()
    required = {label.replace("*", "").strip() for label in labels if "*" in label}
    assert {"Image ids", "COS bucket"} <= required
    assert not {"File name prefixes", "Region"} & required  # optional: Params that allow null
    dialog.locator("#element_image_ids").fill("img-BAD")
    dialog.locator("#element_bucket_name").fill(BUCKET)
    response = _submit(dialog)
    assert response.status == 400
    # Airflow shows the api-server's check at the top of the form: the param's name, value and pattern.
    error = dialog.get_by_text(re.compile(r"Invalid input for param image_ids: 'img-BAD' does not match"))
    error.wait_for()
    error.scroll_into_view_if_needed()
    screenshot(page, "trigger-form-error")
    assert airflow.rest("GET", f"/dags/{DAG_ID}/dagRuns")["total_entries"] == 0


def test_triggered_run_succeeds_with_distinct_console_links(
    page: Any, airflow: Airflow, screenshot: Callable[..., Path]
) -> None:
    if _connection(airflow, "tencentcloud_default") is None:
        airflow.rest(
            "POST",
            "/connections",
            json={
                "connection_id": "tencentcloud_default",
                "conn_type": "tencentcloud",
                "login": SECRET_ID,
                "password": SECRET_KEY,
                "extra": json.dumps({"region": REGION, "endpoint": airflow.emulator.url}),
            },
        )
    dialog = _trigger_form(page, airflow)
    dialog.locator("#element_image_ids").fill(IMAGE_ID)
    dialog.locator("#element_bucket_name").fill(BUCKET)
    dialog.get_by_role("button", name="Waiting for the files").click()
    dialog.locator("input[name=element_poke_interval]").fill("2")
    response = _submit(dialog)
    assert response.status == 200, response.text()
    conf = json.loads(response.request.post_data)["conf"]
    assert conf["file_name_prefixes"] is None and conf["poke_interval"] == 2  # left empty: optional
    run_id = response.json()["dag_run_id"]
    run = f"/dags/{DAG_ID}/dagRuns/{run_id}"
    page.goto("about:blank")  # the DAG page polls the api-server while a run is active: leave it meanwhile

    def finished() -> str | None:
        state = airflow.rest("GET", run)["state"]
        return state if state in ("success", "failed") else None

    assert wait_until(f"run {run_id}", finished, RUN_TIMEOUT, interval=2) == "success", airflow.logs_tail()
    (export,) = airflow.emulator.state()["exports"]
    sensor = airflow.rest("GET", f"{run}/taskInstances/wait_for_export/0")
    assert sensor["state"] == "success"

    # The deferred wait's log, as the UI shows it.
    task_page = f"{airflow.url}/dags/{DAG_ID}/runs/{run_id}/tasks/wait_for_export/mapped/0"
    page.goto(task_page)
    page.get_by_text("Trigger fired event").first.wait_for()
    page.get_by_text(f"Waiting for ExportImages task {export['TaskId']}").first.wait_for()
    screenshot(page, "deferred-wait-log")

    # Both links of both tasks: distinct, the bucket and the file list at the objects' folder.
    opened: list[str] = []

    def console(route: Any) -> None:  # the closed network has no console: answer for it, note the URL
        opened.append(route.request.url)
        route.fulfill(status=200, content_type="text/html", body="<title>Tencent Cloud console</title>")

    page.context.route("https://console.cloud.tencent.com/**", console)
    expected = {"COS bucket": f"{CONSOLE}&type=basicconfig", "Exported objects": f"{CONSOLE}&path=%252F"}
    for task_id in ("start_export", "wait_for_export"):
        page.goto(f"{airflow.url}/dags/{DAG_ID}/runs/{run_id}/tasks/{task_id}/mapped/0/details")
        for name, url in expected.items():
            link = page.get_by_role("link", name=name, exact=True)
            assert link.get_attribute("href") == url
            with page.context.expect_page() as popup:
                link.click()
            popup.value.wait_for_load_state()
            assert popup.value.url == url
            popup.value.close()
        if task_id == "wait_for_export":
            page.get_by_text("Extra Links").scroll_into_view_if_needed()
            screenshot(page, "console-links")
    assert opened == list(expected.values()) * 2
    assert len(set(expected.values())) == 2

"""The provider registers with Airflow: connection type, hook and connection form, read in this process
(the ``airflow providers`` commands that show them: tests/e2e/test_providers_cli.py)."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from airflow_cvm_export import get_provider_info
from airflow_cvm_export.hooks.cvm import CvmHook
from airflow_cvm_export.utils.connection import EXTRA_KEYS
from airflow_cvm_export.version_compat import AIRFLOW_V_3_2_PLUS, AIRFLOW_V_3_3_PLUS

EXTRAS = sorted(EXTRA_KEYS)


def test_hook_attributes_and_form_behaviour():
    assert (CvmHook.conn_type, CvmHook.default_conn_name, CvmHook.conn_name_attr, CvmHook.hook_name) == (
        "tencentcloud",
        "tencentcloud_default",
        "tencentcloud_conn_id",
        "Tencent Cloud",
    )
    behaviour = CvmHook.get_ui_field_behaviour()
    assert behaviour["relabeling"] == {"login": "SecretId", "password": "SecretKey"}
    assert set(behaviour["hidden_fields"]) == {"host", "port", "schema"}
    info = get_provider_info()
    assert info["package-name"] == "airflow-cvm-export"
    assert sorted(info["connection-types"][0]["conn-fields"]) == EXTRAS


def test_ui_connection_form():
    """What the Airflow 3 UI renders for the connection type (``GET /ui/connections/hook_meta``)."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    (meta,) = [m for m in HookMetaService.hook_meta_data() if m.connection_type == "tencentcloud"]
    standard = meta.standard_fields
    assert (standard.login.title, standard.password.title) == ("SecretId", "SecretKey")
    assert standard.login.placeholder == "AKID..."
    assert standard.host.hidden and standard.port.hidden and standard.url_schema.hidden


def test_ui_connection_form_extras():
    """The extras' own fields in the UI's connection form (3.2+: conn-fields; 3.1: get_connection_form_widgets)."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    (meta,) = [m for m in HookMetaService.hook_meta_data() if m.connection_type == "tencentcloud"]
    assert sorted(meta.extra_fields) == EXTRAS
    region = meta.extra_fields["region"]["schema"]
    assert region["title"] == "Region"
    if AIRFLOW_V_3_2_PLUS:
        assert "ap-guangzhou" in region["examples"]  # placeholder and suggestions (conn-fields only)
    for secret in ("token", "external_id", "policy"):
        assert meta.extra_fields[secret]["schema"]["format"] == "password"


@pytest.mark.skipif(not AIRFLOW_V_3_3_PLUS, reason="the route's check is its own function from Airflow 3.3 on")
def test_ui_test_button_is_gated(monkeypatch: pytest.MonkeyPatch):
    """The UI's Test button is refused unless ``[core] test_connection = Enabled``."""
    from airflow.api_fastapi.core_api.routes.public.connections import _ensure_test_connection_enabled
    from fastapi import HTTPException

    monkeypatch.delenv("AIRFLOW__CORE__TEST_CONNECTION", raising=False)
    with pytest.raises(HTTPException):
        _ensure_test_connection_enabled()
    monkeypatch.setenv("AIRFLOW__CORE__TEST_CONNECTION", "Enabled")
    _ensure_test_connection_enabled()


def test_ui_test_button(monkeypatch: pytest.MonkeyPatch):
    """The UI's Test button: a signed DescribeRegions with the form's values."""
    from airflow.models.connection import Connection

    from airflow_cvm_export.emulator import Emulator
    from tests.credentials import SECRET_ID, SECRET_KEY

    monkeypatch.setenv("AIRFLOW__CORE__TEST_CONNECTION", "Enabled")
    # As the route does it: the form's values (unset extras as null) as a transient env connection.
    emulator = Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY).start()
    try:
        extra = dict.fromkeys(EXTRAS) | {"region": "ap-guangzhou", "endpoint": emulator.url, "allow_http": False}
        form: dict[str, Any] = {
            "conn_type": "tencentcloud",
            "login": SECRET_ID,
            "password": SECRET_KEY,
            "extra": json.dumps(extra),
        }
        conn = Connection(conn_id="ui_test_button", **form)
        monkeypatch.setenv("AIRFLOW_CONN_UI_TEST_BUTTON", conn.get_uri())
        ok, message = conn.test_connection()
        assert ok, message
        assert message.startswith("Connection OK")
        bad = Connection(conn_id="ui_test_button", **{**form, "password": "not-the-key-7f3a"})
        monkeypatch.setenv("AIRFLOW_CONN_UI_TEST_BUTTON", bad.get_uri())
        ok, message = bad.test_connection()
        assert not ok and "AuthFailure" in message and "not-the-key-7f3a" not in message
    finally:
        emulator.stop()


def test_airflow_3_1_form_widgets_match_the_conn_fields(monkeypatch: pytest.MonkeyPatch):
    """Airflow 3.1 reads the extras from get_connection_form_widgets, with its api-server's stand-ins
    for wtforms and flask_appbuilder (neither is installed): the same fields as ``conn-fields``."""
    import types

    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService as Meta

    stand_ins: dict[str, dict[str, Any]] = {
        "wtforms": {"StringField": Meta.MockStringField, "PasswordField": Meta.MockPasswordField,
                    "BooleanField": Meta.MockBooleanField},
        "flask_babel": {"lazy_gettext": str},
        "flask_appbuilder": {},
        "flask_appbuilder.fieldwidgets": {"BS3TextFieldWidget": Meta.MockAnyWidget,
                                          "BS3PasswordFieldWidget": Meta.MockAnyWidget},
    }  # fmt: skip
    for name, attributes in stand_ins.items():
        monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(**attributes))

    widgets = {name: field.param.dump() for name, field in CvmHook.get_connection_form_widgets().items()}

    conn_fields = get_provider_info()["connection-types"][0]["conn-fields"]
    assert sorted(widgets) == sorted(conn_fields) == EXTRAS
    for name, spec in conn_fields.items():
        shown = widgets[name]
        assert (shown["schema"]["title"], shown["description"]) == (spec["label"], spec["description"])
        kind = "boolean" if spec["schema"].get("type") == "boolean" else "string"
        assert shown["schema"]["type"] == [kind, "null"]
        assert shown["schema"].get("format") == spec["schema"].get("format")


def test_get_conn_is_the_hooks_session():
    hook = CvmHook("tc_none")
    assert hook.get_conn() is hook.session


def test_timeout_and_retry_fields_allow_what_the_connection_check_allows():
    """The form's bounds of the HTTP extras are those ``utils.connection.http_settings`` checks."""
    from airflow_cvm_export.utils import connection

    fields = get_provider_info()["connection-types"][0]["conn-fields"]
    bounds = {name: fields[name]["schema"] for name in connection.HTTP_KEYS}
    assert bounds["connect_timeout"]["maximum"] == bounds["read_timeout"]["maximum"] == connection.MAX_TIMEOUT
    assert (bounds["retry_limit"]["minimum"], bounds["retry_limit"]["maximum"]) == (1, connection.MAX_RETRY_LIMIT)
    assert (bounds["retry_delay"]["minimum"], bounds["retry_delay"]["maximum"]) == (0, connection.MAX_RETRY_DELAY)

"""Hooks for the Tencent Cloud CVM API and COS (:mod:`airflow_cvm_export.hooks.cvm`).

This package module holds only what a DAG file needs while it is parsed (the operator's and the
sensor's defaults), so importing it loads no hook.
"""

# The connection every ``tencentcloud_conn_id`` argument defaults to (``CvmHook.default_conn_name``).
DEFAULT_CONN_ID = "tencentcloud_default"

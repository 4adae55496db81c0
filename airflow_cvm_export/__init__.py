"""Apache Airflow provider for exporting Tencent Cloud CVM custom images to COS buckets."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "get_provider_info"]


_CONN_FIELDS: dict[str, dict[str, Any]] = {
    "region": {
        "label": "Region",
        "description": "Default region of API calls, e.g. ap-guangzhou",
        # The Airflow 3 form shows "examples" as the field's placeholder and a list of suggestions.
        "schema": {
            "type": ["string", "null"],
            # "pattern": the region check's own, added by get_provider_info (see _conn_fields)
            "examples": ["ap-guangzhou", "ap-shanghai", "ap-beijing", "ap-hongkong", "ap-singapore", "eu-frankfurt"],
        },
    },
    "endpoint": {
        "label": "API endpoint",
        "description": "Override of https://cvm.tencentcloudapi.com, e.g. the emulator http://127.0.0.1:9000",
        "schema": {"type": ["string", "null"]},
    },
    "cos_endpoint": {
        "label": "COS endpoint",
        "description": "Path-style COS endpoint override (the emulator); empty for the real COS",
        "schema": {"type": ["string", "null"]},
    },
    "token": {
        "label": "Session token",
        "description": "Token of temporary credentials (STS), if any",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
    "allow_http": {
        "label": "Allow plain http",
        "description": "Allow http to a non-loopback endpoint (the emulator as a docker-compose service)",
        "schema": {"type": "boolean", "default": False},
    },
    "rate_limits": {
        "label": "Rate limits",
        "description": 'Requests per second per action, e.g. {"DescribeImages": 40}; 0 switches one off',
        "schema": {"type": ["object", "null"]},
    },
    # Each HTTP request's timeouts and the retries (the hook's timeout/retry_limit/retry_delay arguments win).
    "connect_timeout": {
        "label": "Connect timeout (seconds)",
        "description": "Seconds to connect, per attempt (default 5)",
        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 600},
    },
    "read_timeout": {
        "label": "Read timeout (seconds)",
        "description": "Seconds to wait for an answer, per attempt (default 30)",
        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 600},
    },
    "retry_limit": {
        "label": "Retry limit",
        "description": "Attempts of a retryable call, 1 (no retry) to 20 (default 5). With the timeouts it bounds "
        "how long a retry waits before sending ExportImages again after a lost answer",
        "schema": {"type": ["integer", "null"], "minimum": 1, "maximum": 20},
    },
    "retry_delay": {
        "label": "Retry delay (seconds)",
        "description": "Base of the exponential back-off between attempts, 0 to 60 (default 1)",
        "schema": {"type": ["number", "null"], "minimum": 0, "maximum": 60},
    },
    # Where credentials come from (docs/credentials.md); checked in utils/connection.py.
    "credential_source": {
        "label": "Credential source",
        "description": "connection (SecretId/SecretKey above), environment, profile, cvm_role (the instance's "
        "CAM role), oidc (TKE pod identity) or default (environment, profile, cvm_role, oidc); empty: the "
        "SecretId/SecretKey above, else TENCENTCLOUD_SECRET_ID/_SECRET_KEY",
        "schema": {
            "type": ["string", "null"],
            "enum": [None, "connection", "environment", "profile", "cvm_role", "oidc", "default"],
        },
    },
    "profile_name": {
        "label": "Profile name",
        "description": "With credential_source profile: ~/.tccli/<name>.credential or [<name>] of "
        "~/.tencentcloud/credentials (default: default)",
        "schema": {"type": ["string", "null"]},
    },
    "cvm_role_name": {
        "label": "CVM role name",
        "description": "With credential_source cvm_role: the instance's CAM role (empty: asked from the "
        "metadata service)",
        "schema": {"type": ["string", "null"]},
    },
    "role_arn": {
        "label": "Role ARN",
        "description": "Assume this CAM role (STS AssumeRole) with the source's credentials, e.g. "
        "qcs::cam::uin/100000000001:roleName/ExportRole",
        "schema": {"type": ["string", "null"]},
    },
    "role_session_name": {
        "label": "Role session name",
        "description": "RoleSessionName of AssumeRole / AssumeRoleWithWebIdentity (default airflow-cvm-export)",
        "schema": {"type": ["string", "null"]},
    },
    "duration_seconds": {
        "label": "Credential duration (seconds)",
        "description": "Lifetime asked of STS, up to 43200 (default 7200); renewed before it ends",
        "schema": {"type": ["integer", "null"], "minimum": 1, "maximum": 43200},
    },
    "external_id": {
        "label": "External ID",
        "description": "ExternalId of AssumeRole, if the role's trust policy asks for one",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
    "policy": {
        "label": "Session policy",
        "description": "CAM policy JSON narrowing the assumed role's permissions (sent URL-encoded)",
        "schema": {"type": ["object", "string", "null"], "format": "password"},
    },
    "sts_endpoint": {
        "label": "STS endpoint",
        "description": "Override of https://sts.tencentcloudapi.com (a private endpoint, the emulator)",
        "schema": {"type": ["string", "null"]},
    },
    "metadata_endpoint": {
        "label": "Metadata endpoint",
        "description": "Override of http://metadata.tencentyun.com (the emulator)",
        "schema": {"type": ["string", "null"]},
    },
}


def _conn_fields() -> dict:
    """``_CONN_FIELDS`` with the region field checked by the pattern the provider's own check uses."""
    from airflow_cvm_export.utils.patterns import REGION_PATTERN

    region = _CONN_FIELDS["region"]
    return {**_CONN_FIELDS, "region": {**region, "schema": {**region["schema"], "pattern": REGION_PATTERN}}}


def get_provider_info() -> dict:
    """Return the provider metadata Airflow's ProvidersManager reads from the entry point."""
    return {
        "package-name": "airflow-cvm-export",
        "name": "Tencent Cloud CVM image export",
        "description": "Export Tencent Cloud CVM custom images to COS buckets and wait for the files.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Tencent Cloud CVM",
                "external-doc-url": "https://www.tencentcloud.com/document/product/213",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": "Tencent Cloud CVM", "python-modules": ["airflow_cvm_export.hooks.cvm"]}],
        "operators": [
            {"integration-name": "Tencent Cloud CVM", "python-modules": ["airflow_cvm_export.operators.cvm"]}
        ],
        "sensors": [{"integration-name": "Tencent Cloud CVM", "python-modules": ["airflow_cvm_export.sensors.cvm"]}],
        "triggers": [{"integration-name": "Tencent Cloud CVM", "python-modules": ["airflow_cvm_export.triggers.cvm"]}],
        "connection-types": [
            {
                "connection-type": "tencentcloud",
                "hook-class-name": "airflow_cvm_export.hooks.cvm.CvmHook",
                "hook-name": "Tencent Cloud",
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "port", "schema"],
                    "relabeling": {"login": "SecretId", "password": "SecretKey"},
                    "placeholders": {"login": "AKID...", "password": "SecretKey of the API key"},
                },
                "conn-fields": _conn_fields(),
            }
        ],
        "asset-uris": [{"schemes": ["cos"], "handler": "airflow_cvm_export.assets.cos.sanitize_uri"}],
        "extra-links": [
            "airflow_cvm_export.links.cvm.CosBucketLink",
            "airflow_cvm_export.links.cvm.CosObjectsLink",
        ],
    }

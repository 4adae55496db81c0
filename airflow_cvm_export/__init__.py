"""Apache Airflow provider for exporting Tencent Cloud CVM custom images to COS buckets."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "get_provider_info"]


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
        "triggers": [
            {"integration-name": "Tencent Cloud CVM", "python-modules": ["airflow_cvm_export.triggers.cvm"]}
        ],
        "connection-types": [
            {"connection-type": "tencentcloud", "hook-class-name": "airflow_cvm_export.hooks.cvm.CvmHook"}
        ],
        "extra-links": [
            "airflow_cvm_export.links.cvm.CosBucketLink",
            "airflow_cvm_export.links.cvm.CosObjectsLink",
        ],
    }

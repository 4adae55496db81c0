"""The provider's ``cos://`` asset URI scheme, as Airflow applies it to every Asset."""

from __future__ import annotations

import pytest
from airflow.sdk import Asset

from airflow_cvm_export.utils.waiting import export_assets


def test_the_sensors_asset_uris_stay_as_they_are() -> None:
    export = {"image_ids": ["img-centos01"], "file_name_prefixes": None}
    objects = [{"bucket": "exports-1250000000", "key": "img-centos01_system_snap-1.raw"}]
    (uri,) = export_assets(export, objects, "cvm_export_nightly")

    assert Asset(uri=uri).uri == uri == "cos://exports-1250000000/img-centos01?dag_id=cvm_export_nightly"


def test_a_cos_uri_without_a_bucket_is_refused() -> None:
    with pytest.raises(ValueError, match="must name a bucket"):
        Asset(uri="cos:///img-centos01")

"""The official CLI, tccli, unchanged against the emulator: ``--endpoint http://HOST:PORT``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from airflow_cvm_export.emulator.catalog import REGION, WRITABLE_BUCKETS

TCCLI = str(Path(sys.executable).with_name("tccli"))


def _tccli(client, tmp_path: Path, *args: str) -> dict:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TENCENTCLOUD_")},
        "HOME": str(tmp_path),  # no profile of the developer's
        "TENCENTCLOUD_SECRET_ID": client.secret_id,
        "TENCENTCLOUD_SECRET_KEY": client.secret_key,
        "TENCENTCLOUD_REGION": REGION,
    }
    done = subprocess.run(
        [TCCLI, "cvm", *args, "--endpoint", client.emu.url], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_tccli_describe_images_by_tag_then_export(client, tmp_path):
    tagged = _tccli(client, tmp_path, "DescribeImages", "--Filters", '[{"Name": "tag:backup", "Values": ["nightly"]}]')
    assert [image["ImageId"] for image in tagged["ImageSet"]] == ["img-centos01", "img-centos02"]
    started = _tccli(
        client, tmp_path, "ExportImages", "--ImageIds", '["img-centos01"]', "--BucketName", WRITABLE_BUCKETS[0]
    )
    assert started["CosPaths"] and isinstance(started["TaskId"], int)
    assert client.emu.state()["requests"] == {"DescribeImages": {"ok": 1}, "ExportImages": {"ok": 1}}

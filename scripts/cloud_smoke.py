"""``make cloud-smoke``: check your own Tencent Cloud account with free, read-only calls only.

Runs DescribeRegions, DescribeImages, ExportImages with ``DryRun`` and a COS ``HEAD`` of the bucket,
and prints one line per call: PASS or FAIL, and the RequestId of the answer. Exits 1 when a call
failed, 0 when all passed, and 0 with a "skipped" line when no credentials are set.

Nothing here can start an export: every call goes through :class:`ReadOnlyCvmHook`, which refuses,
before signing or sending, any action but the read-only ones and ExportImages with ``DryRun``.

Variables (see docs/development.md, "Smoke test against your account"):

- ``TENCENTCLOUD_SECRET_ID``, ``TENCENTCLOUD_SECRET_KEY`` (and ``TENCENTCLOUD_TOKEN`` for temporary
  credentials): the account. Without both, the smoke test is skipped.
- ``TENCENTCLOUD_REGION``: region of the image and bucket (default ``ap-guangzhou``).
- ``CVM_SMOKE_BUCKET``: full COS bucket name ``<name>-<APPID>`` for the dry run and the HEAD.
- ``CVM_SMOKE_IMAGE_ID``: custom image to dry-run; default the first custom image DescribeImages lists.
- ``CVM_SMOKE_ENDPOINT``, ``CVM_SMOKE_COS_ENDPOINT``: other endpoints (the emulator, in the tests).

A call whose input is missing (no bucket, no custom image) is reported as SKIP.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

from airflow_cvm_export.hooks.client import is_read_only
from airflow_cvm_export.hooks.cvm import CvmHook
from airflow_cvm_export.utils.errors import (
    DryRunSucceeded,
    TencentCloudConfigError,
    TencentCloudError,
    TencentCloudResponseError,
)

CONN_ID = "cvm_cloud_smoke"
DEFAULT_REGION = "ap-guangzhou"


class ReadOnlyCvmHook(CvmHook):
    """A :class:`CvmHook` that can only read: an action that is not a read, and has no DryRun, is refused."""

    def call(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        """Refuse, before anything is signed or sent, every call that could change something."""
        if not is_read_only(action, params):  # the read actions, or any action with DryRun
            raise TencentCloudConfigError(f"the smoke test only reads: {action} without DryRun is refused")
        return super().call(action, params)


def make_hook(environ: dict[str, str]) -> ReadOnlyCvmHook:
    """The read-only hook on a connection built from the variables (credentials from the environment)."""
    extra = {"region": environ.get("TENCENTCLOUD_REGION") or DEFAULT_REGION}
    if environ.get("CVM_SMOKE_ENDPOINT"):
        extra["endpoint"] = environ["CVM_SMOKE_ENDPOINT"]
    if environ.get("CVM_SMOKE_COS_ENDPOINT"):
        extra["cos_endpoint"] = environ["CVM_SMOKE_COS_ENDPOINT"]
    os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps({"conn_type": "tencentcloud", "extra": extra})
    return ReadOnlyCvmHook(CONN_ID, retry_limit=2)


def checks(hook: ReadOnlyCvmHook, environ: dict[str, str]) -> list[tuple[str, Callable[[], tuple[str, str | None]]]]:
    """The calls, in order: (name, call returning (detail, RequestId))."""
    bucket = environ.get("CVM_SMOKE_BUCKET")
    image: dict[str, str | None] = {"id": environ.get("CVM_SMOKE_IMAGE_ID")}

    def describe_regions() -> tuple[str, str | None]:
        answer = hook.call("DescribeRegions", {})
        return f"{answer.get('TotalCount', 0)} regions", answer.get("RequestId")

    def describe_images() -> tuple[str, str | None]:
        if image["id"]:
            answer = hook.call("DescribeImages", {"ImageIds": [image["id"]], "Limit": 1})
        else:
            filters = [{"Name": "image-type", "Values": ["PRIVATE_IMAGE"]}]
            answer = hook.call("DescribeImages", {"Filters": filters, "Limit": 1})
        found = answer.get("ImageSet") or []
        image["id"] = image["id"] or (found[0]["ImageId"] if found else None)
        shown = ", ".join(f"{i['ImageId']} {i.get('ImageState')}" for i in found) or "no custom image"
        return f"{answer.get('TotalCount', len(found))} image(s): {shown}", answer.get("RequestId")

    def dry_run() -> tuple[str, str | None]:
        if not bucket or not image["id"]:
            raise _Skip("needs CVM_SMOKE_BUCKET and a custom image (CVM_SMOKE_IMAGE_ID)")
        try:
            hook.export_images(image_ids=[image["id"]], bucket_name=bucket, dry_run=True)
        except DryRunSucceeded as answer:
            return f"{image['id']} can be exported to {bucket}", answer.request_id
        raise TencentCloudResponseError("ExportImages with DryRun did not answer DryRunOperation")

    def head_bucket() -> tuple[str, str | None]:
        if not bucket:
            raise _Skip("needs CVM_SMOKE_BUCKET")
        return f"{bucket} exists and is readable", hook.head_cos_bucket(bucket)

    return [
        ("DescribeRegions", describe_regions),
        ("DescribeImages", describe_images),
        ("ExportImages DryRun", dry_run),
        ("COS HEAD bucket", head_bucket),
    ]


class _Skip(Exception):
    """A check whose input was not given."""


def main(environ: dict[str, str]) -> int:
    """Run every check and print its outcome; return the exit status."""
    if not (environ.get("TENCENTCLOUD_SECRET_ID") and environ.get("TENCENTCLOUD_SECRET_KEY")):
        print("cloud-smoke skipped: set TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY to run it")
        return 0
    hook = make_hook(environ)
    failed = 0
    for name, check in checks(hook, environ):
        try:
            detail, request_id = check()
        except _Skip as skip:
            print(f"SKIP {name}: {skip}")
            continue
        except TencentCloudError as error:
            failed += 1
            print(f"FAIL {name}: [{error.code or '-'}] {error.message} (RequestId {error.request_id or '-'})")
            continue
        print(f"PASS {name}: {detail} (RequestId {request_id or '-'})")
    hook.close()
    print(f"cloud-smoke: {'FAILED' if failed else 'passed'} ({failed} failed); nothing was exported")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(dict(os.environ)))

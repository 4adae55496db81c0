"""The nightly DAG with images chosen by tags or DescribeImages filters instead of a list of ids:
the plan task lists them when the run starts and exports only those ExportImages can take."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.e2e

BUCKET = "exports-1250000000"
SETTINGS = {"bucket_name": BUCKET, "poke_interval": 1, "batch_size": 2, "mode": "poke", "timeout": 120}


def exported(emulator: Any) -> list[str]:
    return sorted(image for export in emulator.state()["exports"] for image in export["ImageIds"])


def test_image_tags_select_the_tagged_images(run_dag: Any, start_emulator: Any) -> None:
    emulator = start_emulator(progression="immediate")
    run = run_dag("cvm_export_nightly", emulator, variable={"image_tags": {"backup": "nightly"}, **SETTINGS})
    assert run.returncode == 0, run.output[-5000:]
    assert exported(emulator) == ["img-centos01", "img-centos02"]
    (manifest,) = run.xcoms("write_manifest")
    assert len(manifest["cos_paths"]) == 3  # one disk and two disks


def test_unexportable_matches_are_skipped_with_a_log_line_and_counted(run_dag: Any, start_emulator: Any) -> None:
    emulator = start_emulator(progression="immediate")
    ids = ["img-centos01", "img-windows1", "img-syncing1", "img-redhat01", "img-ubuntu02"]
    variable = {"image_filters": [{"Name": "image-id", "Values": ids}], **SETTINGS}
    run = run_dag("cvm_export_nightly", emulator, variable=variable)
    assert run.returncode == 0, run.output[-5000:]
    assert exported(emulator) == ["img-centos01", "img-ubuntu02"]
    assert "Skipping img-windows1 (ad-win2019): it is a Windows image" in run.output
    assert "Skipping img-syncing1 (copying-from-shanghai): its state is SYNCING" in run.output
    assert "Skipping img-redhat01 (rhel8-custom): it is a Red Hat image" in run.output
    assert "5 image(s) matched: 2 to export, 3 skipped" in run.output
    assert emulator.state()["requests"]["ExportImages"] == {"ok": 1}  # one batch of two, nothing refused

"""The example DAGs' planning (``dags/cvm_export_nightly.py``, ``dags/cvm_export_adhoc.py``): from
their config to batches of ExportImages arguments, each with its sensor's settings.

Not part of the provider's operators: a worked example that the DAGs import (installed with the
package, so a deployment's DAGs folder needs only the DAG files). Every config key is checked with
the provider's own argument checks (:mod:`airflow_cvm_export.utils.validation`) before any request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Any

from airflow_cvm_export.utils.errors import TencentCloudConfigError, invalid
from airflow_cvm_export.utils.selection import exportable_ids, selection_filters
from airflow_cvm_export.utils.validation import (
    MAX_IMAGE_IDS,
    as_bucket_name,
    as_export_format,
    as_file_name_prefixes,
    as_image_ids,
    as_optional_region,
)

SENSOR_MODES = ("poke", "reschedule")
# How the example DAGs wait: in the triggerer, or in a worker in one of the sensor's modes.
WAIT_MODES = ("deferrable", *SENSOR_MODES)
# Image ids per ExportImages call unless the config says otherwise: as many as one call takes.
DEFAULT_BATCH_SIZE = MAX_IMAGE_IDS
# The config may list more images than one call takes: plan_exports splits them into batches (mapped tasks).
MAX_PLANNED_IMAGE_IDS = 1000
DEFAULT_POKE_INTERVAL = 60
DEFAULT_TIMEOUT = 24 * 60 * 60


def _as_int(value: Any, field: str, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 12:
        value = int(value)
    allowed = f"an integer >= {minimum}" if maximum is None else f"an integer from {minimum} to {maximum}"
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (maximum and value > maximum):
        raise invalid(field, allowed, value)
    return value


# default_args of the example DAGs: a busy image or a full export queue is retried, with back-off.
DAG_RETRIES = {
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}


def run_stamp(run_id: str, run_after: datetime, tz: tzinfo) -> str:
    """``<YYYYMMDD of run_after in tz>-<8 hex digits of run_id>``: readable, different for every DAG run.

    Works for runs without a logical date (``airflow dags trigger``, the REST API). The same run
    always gets the same stamp, so a retried or cleared task looks for its own files; two runs of
    one day (scheduled, manual, REST) never share one.
    """
    return f"{run_after.astimezone(tz):%Y%m%d}-{hashlib.sha256(run_id.encode()).hexdigest()[:8]}"


def plan_exports(
    config: Any,
    *,
    prefix_suffix: str | None = None,
    default_prefix: str = "nightly",
    list_images: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None,
) -> list[dict[str, dict[str, Any]]]:
    """Split the example DAGs' config into ExportImages batches, each with its sensor settings.

    ``config`` keys: ``image_ids`` or ``image_tags``/``image_filters``, ``bucket_name``
    (required), ``export_format``, ``file_name_prefixes`` (with ``image_ids`` only), ``region``,
    ``poke_interval`` (default 60 s), ``mode`` (``deferrable``, ``poke`` or ``reschedule``; unset or
    None: the sensor's default, deferrable when ``[operators] default_deferrable`` is on, else poke),
    ``timeout`` (seconds, default one day), ``batch_size`` (image ids per call, default 10). With
    ``prefix_suffix`` (see :func:`run_stamp`) each prefix becomes ``<prefix>-<suffix>``
    (``default_prefix`` when no prefixes are given), so no two runs share an object key.

    ``image_tags``/``image_filters`` (see :func:`~airflow_cvm_export.utils.selection.selection_filters`)
    are resolved, after every other key is checked, by ``list_images(filters)`` (``CvmHook.list_images``)
    into the ids of the images ExportImages can take; the others are skipped with a log line.

    Returns one ``{"export": operator kwargs, "wait": sensor kwargs}`` per batch; map the operator
    over :func:`export_kwargs` and the sensor over :func:`wait_kwargs`.
    """
    if not isinstance(config, Mapping):
        raise invalid("config", "a JSON object with at least image_ids (or image_tags) and bucket_name", config)
    filters = selection_filters(config)
    if filters is not None and config.get("file_name_prefixes") is not None:
        raise invalid("file_name_prefixes", "absent with image_tags/image_filters (one prefix per image id)", "given")
    ids = as_image_ids(config.get("image_ids"), limit=MAX_PLANNED_IMAGE_IDS) if filters is None else []
    prefixes = as_file_name_prefixes(config.get("file_name_prefixes"), len(ids))
    common = {
        "bucket_name": as_bucket_name(config.get("bucket_name")),
        "export_format": as_export_format(config.get("export_format")),
        "region": as_optional_region(config.get("region")),
    }
    wait = {
        "poke_interval": _as_int(config.get("poke_interval", DEFAULT_POKE_INTERVAL), "poke_interval", 1),
        "timeout": _as_int(config.get("timeout", DEFAULT_TIMEOUT), "timeout", 1),
        **_wait_mode(config.get("mode")),
    }
    size = _as_int(config.get("batch_size", DEFAULT_BATCH_SIZE), "batch_size", 1, MAX_IMAGE_IDS)
    if filters is not None:
        if list_images is None:
            raise TencentCloudConfigError("image_tags/image_filters need list_images (CvmHook.list_images)")
        ids = exportable_ids(list_images(filters))
    if prefix_suffix is not None:
        prefixes = [f"{prefix}-{prefix_suffix}" for prefix in (prefixes or [default_prefix] * len(ids))]
        as_file_name_prefixes(prefixes, len(ids))
    return [
        {
            "export": {
                "image_ids": ids[start : start + size],
                "file_name_prefixes": prefixes[start : start + size] if prefixes else None,
                **common,
            },
            "wait": dict(wait),
        }
        for start in range(0, len(ids), size)
    ]


def _wait_mode(mode: Any) -> dict[str, Any]:
    """Sensor kwargs of a wait mode; an explicit mode also sets ``deferrable``, so that
    ``[operators] default_deferrable`` cannot override it."""
    if mode is None:
        return {}
    if mode not in WAIT_MODES:
        raise invalid("mode", "one of " + ", ".join(WAIT_MODES) + " (or unset)", mode)
    return {"deferrable": True} if mode == "deferrable" else {"mode": mode, "deferrable": False}


def export_kwargs(batch: Mapping[str, Any]) -> dict[str, Any]:
    """Operator kwargs of one batch of :func:`plan_exports`."""
    return dict(batch["export"])


def wait_kwargs(pair: Sequence[Any]) -> dict[str, Any]:
    """Sensor kwargs from one ``(export record, batch of plan_exports)`` pair of a zipped mapping."""
    export, batch = pair
    return {"export": export, **batch["wait"]}

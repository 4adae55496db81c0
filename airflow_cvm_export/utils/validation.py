"""Argument checks of the operator, the sensor and the example DAGs' config (pure, no Airflow, no network).

Every check runs after template rendering and before any request is sent. Each failure is a
:class:`~airflow_cvm_export.utils.errors.TencentCloudConfigError` naming the field and what it allows.

Templates render differently depending on the DAG: without ``render_template_as_native_obj`` every
field is a string (``"['img-…']"``, ``"True"``); with it, ``"{{ ds_nodash }}"`` becomes an ``int``
and ``"True"`` a ``bool``. Values whose meaning is clear are normalised (a string holding a list,
an integer file name prefix, ``"true"``/``"false"``); anything else is rejected.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from airflow_cvm_export.utils import bounded_json
from airflow_cvm_export.utils.errors import TencentCloudConfigError, shown
from airflow_cvm_export.utils.selection import exportable_ids, selection_filters

# The connection every ``tencentcloud_conn_id`` argument defaults to.
DEFAULT_CONN_ID = "tencentcloud_default"
EXPORT_FORMATS = ("RAW", "QCOW2", "VHD", "VMDK")
DEFAULT_EXPORT_FORMAT = "RAW"
# The *_PATTERN values are compiled on first use (``re``'s cache), not when a DAG file imports this.
# The form of every documented image id: ``img-`` and 8 lowercase letters or digits.
IMAGE_ID_PATTERN = r"^img-[a-z0-9]{8}$"
# ``<name>-<APPID>``: lowercase letters, digits and hyphens, then a numeric APPID; at most 60 characters.
BUCKET_NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?-[0-9]+$"
BUCKET_NAME_MAX = 60
# Not documented by Tencent Cloud; kept to characters that are safe in an object key and a URL.
FILE_NAME_PREFIX_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# CAM role names: letters, digits and ``+=,.@_-``, 1 to 128 characters.
ROLE_NAME_PATTERN = r"^[A-Za-z0-9+=,.@_-]{1,128}$"
# Regions look like ``ap-guangzhou``, ``na-siliconvalley`` or ``ap-shanghai-fsi``.
REGION_PATTERN = r"^[a-z]{2,4}(-[a-z]+)+(-\d+)?$"
SENSOR_MODES = ("poke", "reschedule")
# How the example DAGs wait: in the triggerer, or in a worker in one of the sensor's modes.
WAIT_MODES = ("deferrable", *SENSOR_MODES)
# Undocumented by Tencent Cloud (the emulator enforces it): image ids per ExportImages call.
DEFAULT_BATCH_SIZE = 10
MAX_IMAGE_IDS = DEFAULT_BATCH_SIZE
# The example DAGs' config may list more images: plan_exports splits them into batches (mapped tasks).
MAX_PLANNED_IMAGE_IDS = 1000
# The provider's own bounds on a record's CosPaths (Tencent Cloud documents none).
MAX_COS_PATHS = 1000
MAX_COS_PATH_LENGTH = 1024
DEFAULT_POKE_INTERVAL = 60
DEFAULT_TIMEOUT = 24 * 60 * 60


def _fail(field: str, allowed: str, value: Any) -> TencentCloudConfigError:
    return TencentCloudConfigError(f"{field} must be {allowed}, got {shown(value)}")


def _as_list(value: Any, field: str, example: str) -> list[Any]:
    """A list, or a string holding one (JSON, or the Python repr a non-native template renders)."""
    allowed = f"a list such as {example} (or a string holding a JSON list)"
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("["):
            raise _fail(field, allowed + ", not a bare string", value)
        try:
            value = bounded_json.loads(text)
        except bounded_json.JsonTooDeepError:
            raise _fail(field, allowed + f", nested at most {bounded_json.MAX_DEPTH} levels", text) from None
        except ValueError:
            try:
                value = bounded_json.check_depth(ast.literal_eval(text))
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                raise _fail(field, allowed, text) from None
    if not isinstance(value, list | tuple):
        raise _fail(field, allowed, value)
    return list(value)


def as_image_ids(value: Any, field: str = "image_ids", limit: int = MAX_IMAGE_IDS) -> list[str]:
    """A non-empty list of at most ``limit`` distinct image ids such as ``img-pq5pau1w``."""
    ids = _as_list(value, field, "['img-pq5pau1w']")
    if not ids:
        raise _fail(field, "a non-empty list of image ids such as ['img-pq5pau1w']", value)
    if len(ids) > limit:
        raise TencentCloudConfigError(
            f"{field} must list at most {limit} image ids per export, got {len(ids)}; split them into several "
            "exports (plan_exports does, batch_size at a time)"
        )
    for image_id in ids:
        if not isinstance(image_id, str) or not re.fullmatch(IMAGE_ID_PATTERN, image_id):
            raise _fail(f"{field} item", "an image id: 'img-' and 8 lowercase letters or digits", image_id)
    duplicates = sorted({image_id for image_id in ids if ids.count(image_id) > 1})
    if duplicates:
        raise _fail(field, "a list without duplicates (each image is exported once)", duplicates)
    return ids


def as_bucket_name(value: Any, field: str = "bucket_name") -> str:
    """A full COS bucket name ``<name>-<APPID>``."""
    if not isinstance(value, str) or len(value) > BUCKET_NAME_MAX or not re.fullmatch(BUCKET_NAME_PATTERN, value):
        raise _fail(
            field,
            f"a COS bucket name '<name>-<APPID>' such as 'exports-1250000000' (lowercase letters, digits and "
            f"hyphens, then the numeric APPID; at most {BUCKET_NAME_MAX} characters)",
            value,
        )
    return value


def as_export_format(value: Any, field: str = "export_format") -> str:
    """One of RAW, QCOW2, VHD, VMDK (any case); None gives the API's default RAW."""
    if value is None:
        return DEFAULT_EXPORT_FORMAT
    if not isinstance(value, str) or value.strip().upper() not in EXPORT_FORMATS:
        raise _fail(field, "one of " + ", ".join(EXPORT_FORMATS), value)
    return value.strip().upper()


def as_file_name_prefixes(value: Any, count: int, field: str = "file_name_prefixes") -> list[str] | None:
    """None (or empty), or one prefix per image; integers (a native ``{{ ds_nodash }}``) become strings."""
    if value is None or value == "" or value == []:
        return None
    prefixes = []
    for prefix in _as_list(value, field, "['nightly-20261126']"):
        if isinstance(prefix, int) and not isinstance(prefix, bool) and prefix >= 0:
            prefix = str(prefix)
        if not isinstance(prefix, str) or not re.fullmatch(FILE_NAME_PREFIX_PATTERN, prefix):
            raise _fail(
                f"{field} item",
                "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
                prefix,
            )
        prefixes.append(prefix)
    if len(prefixes) != count:
        raise _fail(field, f"a list with one prefix per image ({count}), or empty", prefixes)
    return prefixes


def as_optional_bool(value: Any, field: str) -> bool | None:
    """None, a bool, or the strings ``true``/``false`` (any case) a non-native template renders."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _fail(field, "true or false", value)


def as_seconds(value: Any, field: str) -> float:
    """A finite number of seconds > 0 (an int or a float, not a string)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
        raise _fail(field, "positive seconds (an int or a float)", value)
    return value


def as_role_name(value: Any, field: str = "role_name") -> str | None:
    """None (the API's default ``CVM_QcsRole``) or a CAM role name."""
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(ROLE_NAME_PATTERN, value):
        raise _fail(field, "a CAM role name: 1 to 128 letters, digits or '+=,.@_-'", value)
    return value


def validate_region(region: Any, *, field_name: str = "region") -> str:
    """Return ``region`` if it looks like a Tencent Cloud region such as ``ap-guangzhou``."""
    if not isinstance(region, str) or not re.fullmatch(REGION_PATTERN, region):
        raise TencentCloudConfigError(
            f"{field_name} must be a Tencent Cloud region such as 'ap-guangzhou' or 'na-siliconvalley', "
            f"got {shown(region)}"
        )
    return region


def as_optional_region(value: Any, field: str = "region") -> str | None:
    """None (the connection's region) or a region such as ``ap-guangzhou``."""
    if value is None or value == "":
        return None
    return validate_region(value, field_name=field)


@dataclass(frozen=True)
class ExportArgs:
    """The checked and normalised arguments of one ExportImages call."""

    image_ids: list[str]
    bucket_name: str
    export_format: str
    file_name_prefixes: list[str] | None
    only_export_root_disk: bool | None
    dry_run: bool | None
    role_name: str | None
    region: str | None

    def request(self) -> dict[str, Any]:
        """Keyword arguments of :meth:`~airflow_cvm_export.hooks.cvm.CvmHook.export_images`.

        The region goes to the hook instead.
        """
        kwargs = asdict(self)
        del kwargs["region"]
        return kwargs


def validate_export_args(
    *,
    image_ids: Any,
    bucket_name: Any,
    export_format: Any = None,
    file_name_prefixes: Any = None,
    only_export_root_disk: Any = None,
    dry_run: Any = None,
    role_name: Any = None,
    region: Any = None,
) -> ExportArgs:
    """Check and normalise the operator's rendered arguments; raise on the first bad one."""
    ids = as_image_ids(image_ids)
    return ExportArgs(
        image_ids=ids,
        bucket_name=as_bucket_name(bucket_name),
        export_format=as_export_format(export_format),
        file_name_prefixes=as_file_name_prefixes(file_name_prefixes, len(ids)),
        only_export_root_disk=as_optional_bool(only_export_root_disk, "only_export_root_disk"),
        dry_run=as_optional_bool(dry_run, "dry_run"),
        role_name=as_role_name(role_name),
        region=as_optional_region(region),
    )


def parse_time(value: str) -> datetime:
    """An ISO 8601 time with a zone (``Z`` allowed); ValueError for anything else."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without time zone: {value!r}")
    return parsed


def _as_started_at(value: Any, field: str) -> str:
    allowed = "an ISO 8601 timestamp with a time zone, such as '2026-11-26T02:00:00+00:00'"
    if not isinstance(value, str):
        raise _fail(field, allowed, value)
    try:
        parse_time(value)
    except ValueError:
        raise _fail(field, allowed, value) from None
    return value


def _as_export_mapping(export: Any) -> Mapping[str, Any]:
    allowed = "the export record start_export returns (export=start.output) or a JSON object"
    try:
        if isinstance(export, str):
            export = bounded_json.loads(export)
        bounded_json.check_depth(export)
    except bounded_json.JsonTooDeepError:
        raise _fail("export", allowed + f", nested at most {bounded_json.MAX_DEPTH} levels", export) from None
    except ValueError:
        raise _fail("export", allowed, export) from None
    if not isinstance(export, Mapping):
        raise _fail("export", allowed, export)
    return export


def validate_export_record(export: Any) -> dict[str, Any]:
    """Check an export record (the operator's return value, or the sensor's explicit fields).

    Returns a copy with ``cos_paths``, ``image_ids``, ``bucket_name``, ``region``, ``started_at``,
    ``file_name_prefixes``, ``dry_run`` and ``recovered`` checked and normalised; other keys are kept
    as they are. A ``recovered`` record (the ExportImages answer was lost) has no ``cos_paths``.
    """
    record = dict(_as_export_mapping(export))
    record["image_ids"] = as_image_ids(record.get("image_ids"), "export.image_ids")
    record["bucket_name"] = as_bucket_name(record.get("bucket_name"), "export.bucket_name")
    record["region"] = as_optional_region(record.get("region"), "export.region")
    record["started_at"] = _as_started_at(record.get("started_at"), "export.started_at")
    record["dry_run"] = bool(as_optional_bool(record.get("dry_run"), "export.dry_run"))
    record["recovered"] = bool(as_optional_bool(record.get("recovered"), "export.recovered"))
    record["file_name_prefixes"] = as_file_name_prefixes(
        record.get("file_name_prefixes"), len(record["image_ids"]), "export.file_name_prefixes"
    )
    paths = _as_list(record.get("cos_paths") or [], "export.cos_paths", "['/img-pq5pau1w_system_snap-fiux4bof.raw']")
    if not record["dry_run"] and not record["recovered"] and not paths:
        raise _fail("export.cos_paths", "the non-empty CosPaths ExportImages returned", paths)
    if len(paths) > MAX_COS_PATHS:
        raise _fail("export.cos_paths", f"a list of at most {MAX_COS_PATHS} object paths", f"{len(paths)} paths")
    for path in paths:
        if not _is_object_path(path):
            raise _fail(
                "export.cos_paths item",
                f"a COS object path such as '/img-…_system_snap-….raw' (at most {MAX_COS_PATH_LENGTH} characters, "
                "no control characters, backslashes or '.'/'..' segments)",
                path,
            )
    record["cos_paths"] = paths
    if record.get("baseline") is not None:
        _check_baseline(record["baseline"])
    return record


def _check_baseline(baseline: Any) -> None:
    """``{key: None | {"etag": str, "last_modified": ISO time}}``, as the operator records it."""
    allowed = "a mapping of object keys to None or {'etag', 'last_modified'}"
    if not isinstance(baseline, Mapping):
        raise _fail("export.baseline", allowed, baseline)
    for key, meta in baseline.items():
        if not isinstance(key, str) or not (
            meta is None
            or isinstance(meta, Mapping)
            and isinstance(meta.get("etag"), str)
            and isinstance(meta.get("last_modified"), str)
        ):
            raise _fail("export.baseline", allowed, {key: meta})
        if meta is not None:
            _as_started_at(meta["last_modified"], f"export.baseline[{key!r}].last_modified")


def _is_object_path(path: Any) -> bool:
    """A key HTTP clients send as it is: urllib3 would resolve '..' segments and reach another object."""
    if not isinstance(path, str) or not path.strip("/") or len(path) > MAX_COS_PATH_LENGTH:
        return False
    if "\\" in path or any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        return False
    return not any(segment in (".", "..") for segment in path.split("/"))


def _as_int(value: Any, field: str, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 12:
        value = int(value)
    allowed = f"an integer >= {minimum}" if maximum is None else f"an integer from {minimum} to {maximum}"
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (maximum and value > maximum):
        raise _fail(field, allowed, value)
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
        raise _fail("config", "a JSON object with at least image_ids (or image_tags) and bucket_name", config)
    filters = selection_filters(config)
    if filters is not None and config.get("file_name_prefixes") is not None:
        raise _fail("file_name_prefixes", "absent with image_tags/image_filters (one prefix per image id)", "given")
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
        raise _fail("mode", "one of " + ", ".join(WAIT_MODES) + " (or unset)", mode)
    return {"deferrable": True} if mode == "deferrable" else {"mode": mode, "deferrable": False}


def export_kwargs(batch: Mapping[str, Any]) -> dict[str, Any]:
    """Operator kwargs of one batch of :func:`plan_exports`."""
    return dict(batch["export"])


def wait_kwargs(pair: Sequence[Any]) -> dict[str, Any]:
    """Sensor kwargs from one ``(export record, batch of plan_exports)`` pair of a zipped mapping."""
    export, batch = pair
    return {"export": export, **batch["wait"]}

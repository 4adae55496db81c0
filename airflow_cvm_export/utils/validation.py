"""Argument checks of the operator and the sensor (pure, no Airflow, no network).

Every check runs after template rendering and before any request is sent. Each failure is a
:class:`~airflow_cvm_export.utils.errors.TencentCloudConfigError` naming the field and what it allows.

Templates render differently depending on the DAG: without ``render_template_as_native_obj`` every
field is a string (``"['img-…']"``, ``"True"``); with it, ``"{{ ds_nodash }}"`` becomes an ``int``
and ``"True"`` a ``bool``. Values whose meaning is clear are normalised (a string holding a list,
an integer file name prefix, ``"true"``/``"false"``); anything else is rejected.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from airflow_cvm_export.utils import bounded_json
from airflow_cvm_export.utils.errors import TencentCloudConfigError, invalid, shown
from airflow_cvm_export.utils.patterns import (
    BUCKET_NAME_MAX,
    BUCKET_NAME_PATTERN,
    FILE_NAME_PREFIX_PATTERN,
    IMAGE_ID_PATTERN,
    REGION_PATTERN,
    ROLE_NAME_PATTERN,
)

if TYPE_CHECKING:
    from airflow_cvm_export.utils.records import ExportRecord

EXPORT_FORMATS = ("RAW", "QCOW2", "VHD", "VMDK")
DEFAULT_EXPORT_FORMAT = "RAW"
# Undocumented by Tencent Cloud (the emulator enforces it): image ids per ExportImages call.
MAX_IMAGE_IDS = 10
# The provider's own bounds on a record's CosPaths (Tencent Cloud documents none).
MAX_COS_PATHS = 1000
MAX_COS_PATH_LENGTH = 1024


def _as_list(value: Any, field: str, example: str) -> list[Any]:
    """A list, or a string holding one (JSON, or the Python repr a non-native template renders)."""
    allowed = f"a list such as {example} (or a string holding a JSON list)"
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("["):
            raise invalid(field, allowed + ", not a bare string", value)
        try:
            value = bounded_json.loads(text)
        except bounded_json.JsonTooDeepError:
            raise invalid(field, allowed + f", nested at most {bounded_json.MAX_DEPTH} levels", text) from None
        except ValueError:
            try:
                value = bounded_json.check_depth(ast.literal_eval(text))
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                raise invalid(field, allowed, text) from None
    if not isinstance(value, list | tuple):
        raise invalid(field, allowed, value)
    return list(value)


def as_image_ids(value: Any, field: str = "image_ids", limit: int = MAX_IMAGE_IDS) -> list[str]:
    """A non-empty list of at most ``limit`` distinct image ids such as ``img-pq5pau1w``."""
    ids = _as_list(value, field, "['img-pq5pau1w']")
    if not ids:
        raise invalid(field, "a non-empty list of image ids such as ['img-pq5pau1w']", value)
    if len(ids) > limit:
        raise TencentCloudConfigError(
            f"{field} must list at most {limit} image ids per export, got {len(ids)}; split them into several "
            "exports (the example DAGs' plan_exports does, batch_size at a time)"
        )
    for image_id in ids:
        if not isinstance(image_id, str) or not re.fullmatch(IMAGE_ID_PATTERN, image_id):
            raise invalid(f"{field} item", "an image id: 'img-' and 8 lowercase letters or digits", image_id)
    duplicates = sorted({image_id for image_id in ids if ids.count(image_id) > 1})
    if duplicates:
        raise invalid(field, "a list without duplicates (each image is exported once)", duplicates)
    return ids


def as_bucket_name(value: Any, field: str = "bucket_name") -> str:
    """A full COS bucket name ``<name>-<APPID>``."""
    if not isinstance(value, str) or len(value) > BUCKET_NAME_MAX or not re.fullmatch(BUCKET_NAME_PATTERN, value):
        raise invalid(
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
        raise invalid(field, "one of " + ", ".join(EXPORT_FORMATS), value)
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
            raise invalid(
                f"{field} item",
                "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
                prefix,
            )
        prefixes.append(prefix)
    if len(prefixes) != count:
        raise invalid(field, f"a list with one prefix per image ({count}), or empty", prefixes)
    return prefixes


def as_optional_bool(value: Any, field: str) -> bool | None:
    """None, a bool, or the strings ``true``/``false`` (any case) a non-native template renders."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise invalid(field, "true or false", value)


def as_seconds(value: Any, field: str, *, zero: bool = False) -> float:
    """A finite number of seconds > 0, or >= 0 with ``zero`` (an int or a float, not a string)."""
    number = not isinstance(value, bool) and isinstance(value, int | float)
    if not number or not (0 <= value if zero else 0 < value) or value == float("inf"):
        raise invalid(field, f"{'non-negative' if zero else 'positive'} seconds (an int or a float)", value)
    return value


def as_role_name(value: Any, field: str = "role_name") -> str | None:
    """None (the API's default ``CVM_QcsRole``) or a CAM role name."""
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(ROLE_NAME_PATTERN, value):
        raise invalid(field, "a CAM role name: 1 to 128 letters, digits or '+=,.@_-'", value)
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
        raise invalid(field, allowed, value)
    try:
        parse_time(value)
    except ValueError:
        raise invalid(field, allowed, value) from None
    return value


def _as_export_mapping(export: Any) -> Mapping[str, Any]:
    allowed = "the export record start_export returns (export=start.output) or a JSON object"
    try:
        if isinstance(export, str):
            export = bounded_json.loads(export)
        bounded_json.check_depth(export)
    except bounded_json.JsonTooDeepError:
        raise invalid("export", allowed + f", nested at most {bounded_json.MAX_DEPTH} levels", export) from None
    except ValueError:
        raise invalid("export", allowed, export) from None
    if not isinstance(export, Mapping):
        raise invalid("export", allowed, export)
    return export


def validate_export_record(export: Any) -> ExportRecord:
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
        raise invalid("export.cos_paths", "the non-empty CosPaths ExportImages returned", paths)
    if len(paths) > MAX_COS_PATHS:
        raise invalid("export.cos_paths", f"a list of at most {MAX_COS_PATHS} object paths", f"{len(paths)} paths")
    for path in paths:
        if not _is_object_path(path):
            raise invalid(
                "export.cos_paths item",
                f"a COS object path such as '/img-…_system_snap-….raw' (at most {MAX_COS_PATH_LENGTH} characters, "
                "no control characters, backslashes or '.'/'..' segments)",
                path,
            )
    record["cos_paths"] = paths
    if record.get("baseline") is not None:
        _check_baseline(record["baseline"])
    return cast("ExportRecord", record)  # every key ExportRecord types is checked above


def _check_baseline(baseline: Any) -> None:
    """``{key: None | {"etag": str, "last_modified": ISO time}}``, as the operator records it."""
    allowed = "a mapping of object keys to None or {'etag', 'last_modified'}"
    if not isinstance(baseline, Mapping):
        raise invalid("export.baseline", allowed, baseline)
    for key, meta in baseline.items():
        if not isinstance(key, str) or not (
            meta is None
            or isinstance(meta, Mapping)
            and isinstance(meta.get("etag"), str)
            and isinstance(meta.get("last_modified"), str)
        ):
            raise invalid("export.baseline", allowed, {key: meta})
        if meta is not None:
            _as_started_at(meta["last_modified"], f"export.baseline[{key!r}].last_modified")


def _is_object_path(path: Any) -> bool:
    """A key HTTP clients send as it is: urllib3 would resolve '..' segments and reach another object."""
    if not isinstance(path, str) or not path.strip("/") or len(path) > MAX_COS_PATH_LENGTH:
        return False
    if "\\" in path or any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        return False
    return not any(segment in (".", "..") for segment in path.split("/"))


# Names that moved away, by their new module: the example DAGs' planning (not argument checks), and
# the default connection id (the hooks' own).
_MOVED = {"DEFAULT_CONN_ID": "airflow_cvm_export.hooks"} | dict.fromkeys(
    {
        "DAG_RETRIES",
        "DEFAULT_BATCH_SIZE",
        "DEFAULT_POKE_INTERVAL",
        "DEFAULT_TIMEOUT",
        "MAX_PLANNED_IMAGE_IDS",
        "SENSOR_MODES",
        "WAIT_MODES",
        "export_kwargs",
        "plan_exports",
        "run_stamp",
        "wait_kwargs",
    },
    "airflow_cvm_export.examples.planning",
)


def __getattr__(name: str) -> Any:
    """The names that moved (:data:`_MOVED`), importable from here as before, with a ``DeprecationWarning``."""
    if name in _MOVED:
        import importlib
        import warnings

        warnings.warn(
            f"airflow_cvm_export.utils.validation.{name} moved to {_MOVED[name]}.{name}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

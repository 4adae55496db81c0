"""The emulator's seeded catalog: images, snapshots and buckets, and which error each one triggers.

Tests and users' DAG tests can import the constants here instead of hard-coding ids:
``EXPORTABLE_IMAGE_IDS``, ``WRITABLE_BUCKETS``, ``image_for(code)`` and ``bucket_for(code)``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from typing import Any

REGION = "ap-guangzhou"
OTHER_REGION = "ap-shanghai"
APPID = "1250000000"
DEFAULT_ROLE_NAME = "CVM_QcsRole"
ROLE_NAMES = (DEFAULT_ROLE_NAME,)
# Undocumented by Tencent Cloud: the emulator's own limit on ImageIds per ExportImages call.
MAX_EXPORT_IMAGE_IDS = 10
MAX_DESCRIBE_IMAGE_IDS = 100
EXPORTABLE = "exportable"
WRITABLE = "writable"
CREATED_TIME = "2024-03-01T08:00:00Z"

IMAGE_ID_RE = re.compile(r"^img-[a-z0-9]{8}$")
BUCKET_APPID_RE = re.compile(r"^[a-z0-9][a-z0-9-]*-\d{10}$")

REGIONS: dict[str, tuple[str, str]] = {
    "ap-guangzhou": ("华南地区(广州)", "South China(Guangzhou)"),
    "ap-shanghai": ("华东地区(上海)", "East China(Shanghai)"),
    "ap-beijing": ("华北地区(北京)", "North China(Beijing)"),
    "ap-chengdu": ("西南地区(成都)", "Southwest China(Chengdu)"),
    "ap-hongkong": ("港澳台地区(中国香港)", "Hong Kong, Macau and Taiwan (China)(Hong Kong, China)"),
    "ap-singapore": ("亚太东南(新加坡)", "Southeast Asia(Singapore)"),
    "na-siliconvalley": ("美国西部(硅谷)", "West US(Silicon Valley)"),
    "eu-frankfurt": ("欧洲地区(法兰克福)", "Europe(Frankfurt)"),
}


@dataclass(frozen=True)
class Disk:
    """One snapshot of an image: ``SnapshotSet`` entry."""

    snapshot_id: str
    usage: str  # SYSTEM_DISK | DATA_DISK
    size: int  # GiB

    def describe(self) -> dict[str, Any]:
        """The disk as DescribeImages shows it in ``SnapshotSet``."""
        return {"SnapshotId": self.snapshot_id, "DiskUsage": self.usage, "DiskSize": self.size}


@dataclass(frozen=True)
class Image:
    """A custom, public or shared image, and the ExportImages error it triggers (or ``exportable``)."""

    image_id: str
    name: str
    platform: str
    os_name: str
    disks: tuple[Disk, ...]
    triggers: str = EXPORTABLE
    image_type: str = "PRIVATE_IMAGE"
    state: str = "NORMAL"
    region: str = REGION
    tags: tuple[tuple[str, str], ...] = ()

    def tag_list(self) -> list[dict[str, str]]:
        """The image's tags as API 3.0 shows them: ``[{"Key", "Value"}]``."""
        return [{"Key": key, "Value": value} for key, value in self.tags]

    def describe(self, state: str) -> dict[str, Any]:
        """The ``ImageSet`` entry of DescribeImages, with the image's current ``state``."""
        return {
            "ImageId": self.image_id,
            "OsName": self.os_name,
            "ImageType": self.image_type,
            "CreatedTime": CREATED_TIME,
            "ImageName": self.name,
            "ImageDescription": "",
            "ImageSize": self.disks[0].size,
            "Architecture": "x86_64",
            "ImageState": state,
            "Platform": self.platform,
            "ImageCreator": APPID if self.image_type == "PRIVATE_IMAGE" else "",
            "ImageSource": "OFFICIAL" if self.image_type == "PUBLIC_IMAGE" else "CREATE_IMAGE",
            "SyncPercent": None,
            "IsSupportCloudinit": True,
            "SnapshotSet": [disk.describe() for disk in self.disks],
            "Tags": self.tag_list(),
            "LicenseType": "TencentCloud",
            "ImageFamily": "",
            "ImageDeprecated": False,
        }


@dataclass(frozen=True)
class Bucket:
    """A COS bucket, and the ExportImages error exporting into it triggers (or ``writable``)."""

    name: str
    region: str = REGION
    triggers: str = WRITABLE

    @property
    def exists(self) -> bool:
        """True when the name is a full ``<name>-<APPID>`` bucket name (others answer NoSuchBucket)."""
        return BUCKET_APPID_RE.match(self.name) is not None


def _snapshot_id(image_id: str, index: int) -> str:
    return "snap-" + hashlib.sha1(f"{image_id}/{index}".encode()).hexdigest()[:8]


def _image(image_id: str, name: str, platform: str, os_name: str, sizes: tuple[int, ...], **kw: Any) -> Image:
    disks = tuple(
        Disk(_snapshot_id(image_id, i), "SYSTEM_DISK" if i == 0 else "DATA_DISK", size) for i, size in enumerate(sizes)
    )
    return Image(image_id, name, platform, os_name, disks, **kw)


_CENTOS7 = ("CentOS", "CentOS 7.9 64位")
_UBUNTU22 = ("Ubuntu", "Ubuntu Server 22.04 LTS 64位")

# Tags to select images by (DescribeImages filters tag-key, tag-value, tag:<key>): `env` on four,
# `backup=nightly` on two, `backup=weekly` on one, `team=db` on one; img-ubuntu03 has none.
_EXPORTABLE_IMAGES = (
    _image("img-centos01", "web-centos7", *_CENTOS7, (50,), tags=(("env", "prod"), ("backup", "nightly"))),
    _image(
        "img-centos02",
        "db-centos8",
        "CentOS",
        "CentOS 8.2 64位",
        (50, 100),
        tags=(("env", "prod"), ("backup", "nightly"), ("team", "db")),
    ),
    _image("img-ubuntu01", "app-ubuntu22", *_UBUNTU22, (40, 200, 300), tags=(("env", "staging"), ("backup", "weekly"))),
    _image("img-ubuntu02", "ci-ubuntu20", "Ubuntu", "Ubuntu Server 20.04 LTS 64位", (60,), tags=(("env", "dev"),)),
    _image("img-ubuntu03", "cache-ubuntu24", "Ubuntu", "Ubuntu Server 24.04 LTS 64位", (50, 50)),
)

_ERROR_IMAGES = (
    _image(
        "img-windows1",
        "ad-win2019",
        "Windows",
        "Windows Server 2019 数据中心版 64位中文版",
        (50,),
        triggers="UnsupportedOperation.WindowsImageExportUnsupported",
    ),
    _image(
        "img-public01",
        "CentOS 7.9 64位",
        *_CENTOS7,
        (20,),
        image_type="PUBLIC_IMAGE",
        triggers="UnsupportedOperation.PublicImageExportUnsupported",
    ),
    _image(
        "img-shared01",
        "partner-shared",
        *_UBUNTU22,
        (50,),
        image_type="SHARED_IMAGE",
        triggers="UnsupportedOperation.SharedImageExportUnsupported",
    ),
    _image(
        "img-market01",
        "from-marketplace",
        *_CENTOS7,
        (50,),
        triggers="UnsupportedOperation.MarketImageExportUnsupported",
    ),
    _image(
        "img-redhat01",
        "rhel8-custom",
        "RedHat",
        "RedHat Enterprise Linux 8.4 64位",
        (50,),
        triggers="UnsupportedOperation.RedHatImageExportUnsupported",
    ),
    _image(
        "img-encrypt1",
        "secure-centos",
        *_CENTOS7,
        (50, 100),
        triggers="UnsupportedOperation.EncryptedImagesNotSupported",
    ),
    _image(
        "img-toolarge",
        "huge-system-disk",
        *_UBUNTU22,
        (1024,),
        triggers="UnsupportedOperation.ImageTooLargeExportUnsupported",
    ),
    _image(
        "img-manydisk",
        "six-data-disks",
        *_UBUNTU22,
        (50, 10, 10, 10, 10, 10, 10),
        triggers="InvalidParameterValue.TooLarge",
    ),
    _image(
        "img-freebsd1",
        "bsd-appliance",
        "FreeBSD",
        "FreeBSD 13.1 64位",
        (20,),
        triggers="InvalidParameterValue.InvalidImageOsName",
    ),
    _image(
        "img-failed01",
        "broken-build",
        *_CENTOS7,
        (50,),
        state="CREATEFAILED",
        triggers="InvalidParameterValue.InvalidImageId",
    ),
    _image(
        "img-syncing1",
        "copying-from-shanghai",
        *_CENTOS7,
        (50,),
        state="SYNCING",
        triggers="InvalidParameterValue.InvalidImageState",
    ),
    _image("img-nosnap01", "snapshot-deleted", *_UBUNTU22, (50, 100), triggers="InvalidParameter.SnapshotNotFound"),
)

EXPORTABLE_IMAGE_IDS: tuple[str, ...] = tuple(image.image_id for image in _EXPORTABLE_IMAGES)
WRITABLE_BUCKETS: tuple[str, ...] = (f"exports-{APPID}", f"backups-{APPID}")


def extra_image_id(index: int) -> str:
    """Id of the ``index``-th (1-based) image added by ``extra_images``."""
    return f"img-x{index:07d}"


def _extra_image(index: int) -> Image:
    platform, os_name = _CENTOS7 if index % 2 else _UBUNTU22
    sizes = (50,) if index % 3 else (50, 100)
    return _image(extra_image_id(index), f"scale-{index}", platform, os_name, sizes, tags=(("env", "scale"),))


@dataclass
class Catalog:
    """Every image and bucket the emulator knows, in the main ``region``."""

    region: str = REGION
    extra_images: int = 0
    images: dict[str, Image] = field(init=False)
    buckets: dict[str, Bucket] = field(init=False)

    def __post_init__(self) -> None:
        seeded = _EXPORTABLE_IMAGES + _ERROR_IMAGES
        extra = tuple(_extra_image(i) for i in range(1, self.extra_images + 1))
        self.images = {img.image_id: _in_region(img, self.region) for img in seeded + extra}
        other = OTHER_REGION if self.region != OTHER_REGION else "ap-beijing"
        buckets = [Bucket(name, self.region) for name in WRITABLE_BUCKETS] + [
            Bucket(f"readonly-{APPID}", self.region, "InvalidParameterValue.InvalidBucketPermissionForExport"),
            Bucket(f"faraway-{APPID}", other, "InvalidParameterValue.BucketNotFound"),
            Bucket("exports", self.region, "InvalidParameterValue.InvalidAppIdFormat"),
        ]
        self.buckets = {bucket.name: bucket for bucket in buckets}

    def exportable_image_ids(self) -> list[str]:
        """Ids of every image that can be exported, extra images included."""
        return [img.image_id for img in self.images.values() if img.triggers == EXPORTABLE]

    def to_json(self) -> dict[str, list[dict[str, Any]]]:
        """The ``GET /_emulator/catalog`` document."""
        return {
            "images": [
                {"ImageId": i.image_id, "Region": i.region, "triggers": i.triggers, "Tags": i.tag_list()}
                for i in self.images.values()
            ],
            "buckets": [
                {"BucketName": b.name, "Region": b.region, "triggers": b.triggers} for b in self.buckets.values()
            ],
        }


def _in_region(image: Image, region: str) -> Image:
    return image if image.region == region else replace(image, region=region)


def image_for(code: str) -> str:
    """Id of the catalog image whose export triggers ``code`` (``"exportable"`` gives the first good one)."""
    for image in _EXPORTABLE_IMAGES + _ERROR_IMAGES:
        if image.triggers == code:
            return image.image_id
    raise KeyError(f"no catalog image triggers {code!r}")


def bucket_for(code: str) -> str:
    """Name of the catalog bucket that triggers ``code`` (``"writable"`` gives the first good one)."""
    for bucket in Catalog().buckets.values():
        if bucket.triggers == code:
            return bucket.name
    raise KeyError(f"no catalog bucket triggers {code!r}")

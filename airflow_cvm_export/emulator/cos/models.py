"""The COS backend: buckets and their objects, written by exports and read by COS requests."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from airflow_cvm_export.emulator.catalog import Bucket, Catalog
from airflow_cvm_export.emulator.errors import CosError

MAX_KEYS = 1000


@dataclass(frozen=True)
class CosObject:
    """An object in an emulated bucket."""

    key: str
    body: bytes
    etag: str
    last_modified: float


@dataclass
class Listing:
    """One page of a bucket listing: objects and (with a delimiter) common prefixes, in key order."""

    contents: list[CosObject] = field(default_factory=list)
    common_prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    next_marker: str = ""


def no_such_bucket() -> CosError:
    """The 404 of a bucket that does not exist (or not in the region addressed)."""
    return CosError(404, "NoSuchBucket", "The specified bucket does not exist.")


class CosBackend:
    """Buckets and objects; thread-safe.

    :param catalog: the buckets (those named ``<name>-<APPID>`` exist).
    :param settle: called before every read, so exports that came due write their objects first.
    :param clock_offset: seconds COS's clock is ahead of the true time (negative: behind). Objects are
        stamped with it (``Last-Modified``), COS answers show it in ``Date`` and signatures are checked by it.
    """

    def __init__(self, catalog: Catalog, settle: Callable[[], None] = lambda: None, clock_offset: float = 0.0) -> None:
        self.catalog = catalog
        self.settle = settle
        self.clock_offset = clock_offset
        self._lock = threading.Lock()
        self._objects: dict[str, dict[str, CosObject]] = {}
        self.reset()

    def reset(self) -> None:
        """Empty every bucket."""
        with self._lock:
            self._objects = {name: {} for name, bucket in self.catalog.buckets.items() if bucket.exists}

    def bucket(self, name: str, region: str | None = None) -> Bucket:
        """The bucket ``name`` (in ``region`` when given), or raise ``NoSuchBucket``."""
        bucket = self.catalog.buckets.get(name)
        if bucket is None or not bucket.exists or (region is not None and bucket.region != region):
            raise no_such_bucket()
        return bucket

    def now(self) -> float:
        """Now by COS's clock (``clock_offset`` off the true time)."""
        return time.time() + self.clock_offset

    def put_object(self, bucket: str, key: str, body: bytes, now: float) -> CosObject:
        """Write (or overwrite) an object at the true time ``now``; it is stamped by COS's clock."""
        obj = CosObject(key, body, '"' + hashlib.md5(body).hexdigest() + '"', now + self.clock_offset)
        with self._lock:
            self._objects[bucket][key] = obj
        return obj

    def get_object(self, bucket: str, key: str) -> CosObject:
        """One object, or raise ``NoSuchKey``."""
        self.settle()
        with self._lock:
            obj = self._objects.get(bucket, {}).get(key)
        if obj is None:
            raise CosError(404, "NoSuchKey", "The specified key does not exist.")
        return obj

    def delete_object(self, bucket: str, key: str) -> bool:
        """Delete an object; True if it existed (COS answers 204 either way)."""
        self.settle()
        with self._lock:
            return self._objects.get(bucket, {}).pop(key, None) is not None

    def objects(self, bucket: str) -> dict[str, CosObject]:
        """A snapshot of a bucket's objects by key."""
        self.settle()
        with self._lock:
            return dict(self._objects.get(bucket, {}))

    def list_objects(self, bucket: str, prefix: str, marker: str, max_keys: int, delimiter: str) -> Listing:
        """GET Bucket: keys after ``marker`` starting with ``prefix``; with ``delimiter``, what follows the
        first delimiter after the prefix is rolled up into common prefixes; at most ``max_keys`` entries."""
        objects = self.objects(bucket)
        listing = Listing()
        entries = 0
        for key in sorted(k for k in objects if k.startswith(prefix) and k > marker):
            cut = key.find(delimiter, len(prefix)) if delimiter else -1
            entry = key[: cut + len(delimiter)] if cut >= 0 else key
            if cut >= 0 and (entry in listing.common_prefixes or entry <= marker):
                continue
            if entries == max_keys:
                listing.truncated = True
                break
            entries += 1
            listing.next_marker = entry
            if cut >= 0:
                listing.common_prefixes.append(entry)
            else:
                listing.contents.append(objects[key])
        if not listing.truncated:
            listing.next_marker = ""
        return listing

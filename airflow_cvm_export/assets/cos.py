"""The ``cos://`` asset URI scheme: what the sensor emits, ``cos://<bucket>/<ImageId>?dag_id=<dag_id>``.

Registered under the provider info's ``asset-uris`` (as the amazon provider registers ``s3://``), so
Airflow checks such URIs when an :class:`~airflow.sdk.Asset` is made of one, after its own
normalization (lowercase scheme, no trailing ``/``, sorted query, no fragment).
"""

from __future__ import annotations

from urllib.parse import SplitResult

SCHEME = "cos"


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Check a ``cos://`` URI names a bucket (``cos://<bucket>/<path>``); return it unchanged."""
    if not uri.netloc:
        raise ValueError("a cos:// asset URI must name a bucket: cos://<bucket>/<ImageId or object key>")
    return uri

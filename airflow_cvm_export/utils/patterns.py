"""The forms of the names Tencent Cloud takes, as regular expressions (no imports: the provider info uses one).

Each is written for Python's ``re`` and ECMAScript alike (``[0-9]``, not ``\\d``): the connection
form checks the region with :data:`REGION_PATTERN` too (``conn-fields``' JSON Schema). They are
compiled on first use (``re``'s cache), not when a DAG file imports them.
"""

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
REGION_PATTERN = r"^[a-z]{2,4}(-[a-z]+)+(-[0-9]+)?$"

"""The errors the emulator answers: API 3.0 (with the documented description of each code) and COS."""

from __future__ import annotations

# Descriptions from Tencent Cloud's "Common Error Codes" page and the ExportImages reference.
MESSAGES: dict[str, str] = {
    "AuthFailure.InvalidAuthorization": "Authorization in the request header is invalid.",
    "AuthFailure.SecretIdNotFound": "Key does not exist. Check if the key has been deleted or disabled in "
    "the console, and if not, check if the key is correctly entered.",
    "AuthFailure.SignatureExpire": "Signature expired. Timestamp and server time cannot differ by more than "
    "five minutes.",
    "AuthFailure.SignatureFailure": "The provided credentials could not be validated. Please check your "
    "signature is correct.",
    "AuthFailure.TokenFailure": "Token error.",
    "AuthFailure.CamRoleNameAuthenticateFailed": "Role name authentication failed.",
    # STS (the Go SDK's errors.go descriptions, translated)
    "ResourceNotFound.RoleNotFound": "The role does not exist for the account.",
    "InvalidParameter.WebIdentityTokenError": "WebIdentityToken parameter error.",
    "InvalidParameter.OverTimeError": "The expiry exceeds the threshold.",
    "InvalidParameter.ParamError": "Parameter error.",
    "InvalidParameter.StrategyFormatError": "Policy syntax error.",
    "DryRunOperation": "DryRun Operation. It means that the request would have succeeded, but the DryRun "
    "parameter was used.",
    "InternalError": "Internal error.",
    "InvalidAction": "The API does not exist.",
    "InvalidFilter": "Invalid filter.",
    "InvalidParameter": "Incorrect parameter.",
    "InvalidParameterValue": "Invalid parameter value.",
    "MissingParameter": "A parameter is missing.",
    "NoSuchVersion": "The API version does not exist.",
    "RequestLimitExceeded": "The number of requests exceeds the frequency limit.",
    "UnknownParameter": "Unknown parameter.",
    "UnsupportedProtocol": "HTTP(S) request protocol error; only GET and POST requests are supported.",
    "UnsupportedRegion": "API does not support the requested region.",
    "InvalidImageId.Malformed": "Invalid image ID format.",
    "InvalidImageId.NotFound": "The image cannot be found.",
    "InvalidParameter.ImageIdsSnapshotIdsMustOne": "Either ImageIds or SnapshotIds must be specified.",
    "InvalidParameter.SnapshotNotFound": "The specified snapshot does not exist.",
    "InvalidParameterValue.BucketNotFound": "The bucket does not exist.",
    "InvalidParameterValue.InvalidAppIdFormat": "Invalid AppID",
    "InvalidParameterValue.InvalidBucketPermissionForExport": "You don't have the write permission to the bucket.",
    "InvalidParameterValue.InvalidFileNamePrefixList": "The length of FileNamePrefixList does not match "
    "ImageIds or SnapshotIds.",
    "InvalidParameterValue.InvalidImageId": "The image does not support this operation.",
    "InvalidParameterValue.InvalidImageOsName": "The operating system of the specified image is not "
    "available in the current region.",
    "InvalidParameterValue.InvalidImageState": "The image has another ongoing task. Please check and try again later.",
    "InvalidParameterValue.LimitExceeded": "The number of parameter values exceeds the limit.",
    "InvalidParameterValue.TooLarge": "The parameter value exceeds the maximum limit.",
    "LimitExceeded.ExportImageTaskLimitExceeded": "The number of image export tasks in progress reached the "
    "upper limit. Please try again after the running tasks are completed.",
    "UnsupportedOperation.EncryptedImagesNotSupported": "Encrypted images are not supported.",
    "UnsupportedOperation.ImageTooLargeExportUnsupported": "Failed to export the image: The image is too large.",
    "UnsupportedOperation.MarketImageExportUnsupported": "The custom images created with the market images "
    "cannot be exported.",
    "UnsupportedOperation.PublicImageExportUnsupported": "Public images and market images cannot be exported.",
    "UnsupportedOperation.RedHatImageExportUnsupported": "The RedHat image cannot be exported.",
    "UnsupportedOperation.SharedImageExportUnsupported": "Shared images cannot be exported.",
    "UnsupportedOperation.WindowsImageExportUnsupported": "Windows images cannot be exported.",
}


class ApiError(Exception):
    """An API 3.0 error answer: ``Response.Error.Code`` and ``Message``.

    :param code: the error code; its documented message is looked up.
    :param detail: appended to the documented message.
    """

    def __init__(self, code: str, detail: str = "") -> None:
        self.code = code
        base = MESSAGES.get(code, code)
        self.message = f"{base} {detail}".strip() if detail else base
        super().__init__(f"[{code}] {self.message}")


class CosError(Exception):
    """A COS error answer: HTTP ``status`` and the XML error's ``Code`` and ``Message``.

    :param status: HTTP status, e.g. 403 or 404.
    :param code: COS error code, e.g. ``SignatureDoesNotMatch`` or ``NoSuchKey``.
    :param message: the error's ``Message``.
    :param headers: more response headers, e.g. ``Content-Range`` of a 416.
    :param outcome: what ``state()`` counts the refusal as, when not ``code``.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: list[tuple[str, str]] | None = None,
        outcome: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or []
        self.outcome = outcome or code

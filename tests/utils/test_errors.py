"""Every Tencent Cloud error code of the reference maps to the right exception class."""

from __future__ import annotations

import pickle

import pytest
from airflow.sdk.exceptions import AirflowException

from airflow_cvm_export.utils import errors
from airflow_cvm_export.utils.errors import (
    DryRunSucceeded,
    TencentCloudAuthError,
    TencentCloudBusyError,
    TencentCloudClockSkewError,
    TencentCloudError,
    TencentCloudInvalidParameterError,
    TencentCloudNotFoundError,
    TencentCloudServerError,
    TencentCloudThrottledError,
    TencentCloudUnsupportedImageError,
    error_class,
    from_response,
)
from airflow_cvm_export.version_compat import AirflowFailException

# The 22 business error codes of the ExportImages reference page.
EXPORT_IMAGES_CODES = {
    "AuthFailure.CamRoleNameAuthenticateFailed": TencentCloudAuthError,
    "InvalidImageId.Malformed": TencentCloudInvalidParameterError,
    "InvalidImageId.NotFound": TencentCloudNotFoundError,
    "InvalidParameter.ImageIdsSnapshotIdsMustOne": TencentCloudInvalidParameterError,
    "InvalidParameter.SnapshotNotFound": TencentCloudNotFoundError,
    "InvalidParameterValue.BucketNotFound": TencentCloudNotFoundError,
    "InvalidParameterValue.InvalidAppIdFormat": TencentCloudInvalidParameterError,
    "InvalidParameterValue.InvalidBucketPermissionForExport": TencentCloudAuthError,
    "InvalidParameterValue.InvalidFileNamePrefixList": TencentCloudInvalidParameterError,
    "InvalidParameterValue.InvalidImageId": TencentCloudUnsupportedImageError,
    "InvalidParameterValue.InvalidImageOsName": TencentCloudUnsupportedImageError,
    "InvalidParameterValue.InvalidImageState": TencentCloudBusyError,
    "InvalidParameterValue.LimitExceeded": TencentCloudInvalidParameterError,
    "InvalidParameterValue.TooLarge": TencentCloudInvalidParameterError,
    "LimitExceeded.ExportImageTaskLimitExceeded": TencentCloudBusyError,
    "UnsupportedOperation.EncryptedImagesNotSupported": TencentCloudUnsupportedImageError,
    "UnsupportedOperation.ImageTooLargeExportUnsupported": TencentCloudUnsupportedImageError,
    "UnsupportedOperation.MarketImageExportUnsupported": TencentCloudUnsupportedImageError,
    "UnsupportedOperation.PublicImageExportUnsupported": TencentCloudUnsupportedImageError,
    "UnsupportedOperation.RedHatImageExportUnsupported": TencentCloudUnsupportedImageError,
    "UnsupportedOperation.SharedImageExportUnsupported": TencentCloudUnsupportedImageError,
    "UnsupportedOperation.WindowsImageExportUnsupported": TencentCloudUnsupportedImageError,
}
# The common error codes the API facts list as worth handling.
COMMON_CODES = {
    "AuthFailure.SignatureFailure": TencentCloudAuthError,
    "AuthFailure.SignatureExpire": TencentCloudClockSkewError,
    "AuthFailure.SecretIdNotFound": TencentCloudAuthError,
    "AuthFailure.TokenFailure": TencentCloudAuthError,
    "AuthFailure.UnauthorizedOperation": TencentCloudAuthError,
    "UnauthorizedOperation": TencentCloudAuthError,
    "RequestLimitExceeded": TencentCloudThrottledError,
    "RequestLimitExceeded.UinLimitExceeded": TencentCloudThrottledError,
    "RequestLimitExceeded.GlobalRegionUinLimitExceeded": TencentCloudThrottledError,
    "RequestLimitExceeded.IPLimitExceeded": TencentCloudThrottledError,
    "InternalError": TencentCloudServerError,
    "ServiceUnavailable": TencentCloudServerError,
    "InvalidParameter": TencentCloudInvalidParameterError,
    "InvalidParameterValue": TencentCloudInvalidParameterError,
    "MissingParameter": TencentCloudInvalidParameterError,
    "UnknownParameter": TencentCloudInvalidParameterError,
    "DryRunOperation": DryRunSucceeded,
    "UnsupportedRegion": TencentCloudInvalidParameterError,
    "RequestSizeLimitExceeded": TencentCloudInvalidParameterError,
}


@pytest.mark.parametrize(("code", "cls"), sorted({**EXPORT_IMAGES_CODES, **COMMON_CODES}.items()))
def test_code_maps_to_class(code: str, cls: type[TencentCloudError]):
    assert error_class(code) is cls
    error = from_response(code, "server message", request_id="rid-1", action="ExportImages")
    assert type(error) is cls
    assert (error.code, error.request_id, error.action) == (code, "rid-1", "ExportImages")
    assert str(error).startswith(f"ExportImages: [{code}] server message")
    assert str(error).endswith("(RequestId rid-1)")


def test_table_has_exactly_22_export_codes():
    assert len(EXPORT_IMAGES_CODES) == 22


def test_unknown_codes_fall_back_by_prefix_then_base():
    assert error_class("InternalError.DbError") is TencentCloudServerError
    assert error_class("AuthFailure.Something") is TencentCloudAuthError
    assert error_class("ResourceInsufficient") is TencentCloudError
    assert error_class("") is TencentCloudError


def test_hints_explain_the_fix():
    assert "clock" in str(from_response("AuthFailure.SignatureExpire", "expired"))
    assert "already exporting" in str(from_response("InvalidParameterValue.InvalidImageState", "busy"))


def test_family_is_airflow_and_pickles():
    error = from_response("InvalidImageId.NotFound", "gone", request_id="r", action="DescribeImages")
    assert isinstance(error, AirflowException)
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.code, copy.request_id) == (type(error), str(error), error.code, "r")
    assert issubclass(errors.TencentCloudConfigError, ValueError)
    assert issubclass(errors.TencentCloudOutcomeUnknownError, errors.TencentCloudNetworkError)
    assert issubclass(errors.TencentCloudConnectError, errors.TencentCloudNetworkError)


@pytest.mark.parametrize(
    ("code", "permanent"),
    [
        ("InvalidImageId.NotFound", True),
        ("InvalidParameterValue.InvalidImageId", True),
        ("UnsupportedOperation.ImageTooLarge", True),
        ("MissingParameter", True),
        ("InvalidParameterValue.InvalidImageState", False),  # busy: free again once the other export ends
        ("LimitExceeded.ExportImageTaskLimitExceeded", False),
        ("RequestLimitExceeded", False),
        ("InternalError", False),
        ("AuthFailure.TokenFailure", True),
        ("AuthFailure.SignatureExpire", True),  # the hook re-signs once with the server's clock first
    ],
)
def test_errors_no_retry_can_fix_fail_the_task_at_once(code: str, permanent: bool) -> None:
    """AirflowFailException: Airflow fails the task without spending its retries."""
    assert isinstance(from_response(code, "m"), AirflowFailException) is permanent
    assert issubclass(errors.TencentCloudConfigError, AirflowFailException)

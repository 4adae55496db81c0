"""STS requests (``POST /`` with an STS ``X-TC-Action``) and the metadata service's CAM role paths.

STS goes through the API 3.0 common checks of :class:`~airflow_cvm_export.emulator.cvm.responses.CvmResponse`
for service ``sts`` at version ``2018-08-13``; AssumeRoleWithWebIdentity is unsigned, as the SDKs send it.
"""

from __future__ import annotations

import json

from airflow_cvm_export.emulator.auth import KeyRing
from airflow_cvm_export.emulator.cvm.responses import CvmResponse
from airflow_cvm_export.emulator.faults import RateLimiter
from airflow_cvm_export.emulator.httpserver import Request, Response
from airflow_cvm_export.emulator.sts.models import StsBackend, credentials_json, expiry_json

STS_VERSION = "2018-08-13"
STS_ACTIONS = ("AssumeRole", "AssumeRoleWithWebIdentity")
METADATA_ROLES_PATH = "/latest/meta-data/cam/security-credentials/"
METADATA_PREFIX = "/latest/meta-data/"


def _not_found() -> Response:
    return Response(404, b"404 - Not Found", [("Content-Type", "text/plain")])


def is_sts(request: Request) -> bool:
    """True for ``POST /`` naming an STS action."""
    return request.path == "/" and request.headers.get("x-tc-action") in STS_ACTIONS


def is_metadata(request: Request) -> bool:
    """True for a path of the instance metadata service (``/latest/meta-data/...``)."""
    return request.path.startswith(METADATA_PREFIX)


class StsResponse(CvmResponse):
    """Answers STS's AssumeRole and AssumeRoleWithWebIdentity; returns (outcome, response).

    :param credentials: the key pairs AssumeRole may be signed with.
    :param backend: issues the credentials.
    :param limiter: the per (SecretId, action) rate limits.
    """

    def __init__(self, credentials: KeyRing, backend: StsBackend, limiter: RateLimiter) -> None:
        super().__init__(credentials, None, limiter)  # type: ignore[arg-type]  # no CVM backend: no CVM action
        self.sts = backend
        self.service = "sts"
        self.version = STS_VERSION
        self.unsigned = frozenset({"AssumeRoleWithWebIdentity"})
        self._actions = {
            "AssumeRole": lambda params, region, language: backend.assume_role(params),
            "AssumeRoleWithWebIdentity": lambda params, region, language: backend.assume_role_with_web_identity(params),
        }


class MetadataResponse:
    """The metadata service: the CAM role's name, and its credentials (plain GET, no signature).

    :param backend: issues the instance's credentials.
    """

    def __init__(self, backend: StsBackend) -> None:
        self.backend = backend

    @staticmethod
    def action_name(request: Request) -> str:
        """``Metadata RoleName`` (the role list), ``Metadata Credentials`` (a role's), or ``Metadata <path>``."""
        if request.path == METADATA_ROLES_PATH:
            return "Metadata RoleName"
        if request.path.startswith(METADATA_ROLES_PATH):
            return "Metadata Credentials"
        return "Metadata " + request.path.removeprefix(METADATA_PREFIX)

    @staticmethod
    def fault_response(kind: str, request: Request) -> Response:
        """An injected ``throttle`` or ``internal`` fault: 500 (no error format is documented)."""
        return Response(500, b"500 - Internal Server Error", [("Content-Type", "text/plain")])

    def handle(self, request: Request) -> tuple[str, Response]:
        """``GET`` the role name or the role's credentials; any other path is 404."""
        if request.method != "GET" or not request.path.startswith(METADATA_ROLES_PATH):
            return "NotFound", _not_found()
        role = request.path.removeprefix(METADATA_ROLES_PATH).rstrip("/")
        if not role:
            return "ok", Response(200, self.backend.cam_role.encode(), [("Content-Type", "text/plain")])
        if role != self.backend.cam_role:
            return "NotFound", _not_found()
        issued = self.backend.instance_credentials()
        document = {**credentials_json(issued), **expiry_json(issued), "Code": "Success"}
        return "ok", Response(200, json.dumps(document).encode(), [("Content-Type", "application/json")])

"""Fake credentials used across the tests; the secret parts must never show up in logs or errors."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

SECRET_ID = "AKIDTESTSECRETID"
SECRET_KEY = "test-secret-key-never-logged"
TOKEN = "test-session-token-never-logged"
# A role the emulator's STS lets be assumed (docs/emulator.md, "STS and the metadata service").
ROLE_ARN = "qcs::cam::uin/100000000001:roleName/AirflowCvmExport"


def web_identity_token(expires: float | None = None) -> str:
    """A JWT as TKE writes into a pod's token file (the emulator checks its form and ``exp``; default: in an hour)."""
    import base64
    import json
    import time

    def part(document: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")

    payload = {
        "sub": "system:serviceaccount:airflow:worker",
        "exp": int(time.time() + 3600 if expires is None else expires),
    }
    return f"{part({'alg': 'RS256'})}.{part(payload)}.c2lnbmF0dXJl"


def tke_environment(tmp_path: Path, token: str | None = None) -> dict[str, str]:
    """A TKE pod's OIDC identity for a process's environment: its web identity token file (written under
    ``tmp_path``) and the ``TKE_*`` variables."""
    token_file = tmp_path / "web-identity-token"
    token_file.write_text(token or web_identity_token())
    return {
        "TKE_REGION": "ap-guangzhou",
        "TKE_PROVIDER_ID": "OIDC",
        "TKE_WEB_IDENTITY_TOKEN_FILE": str(token_file),
        "TKE_ROLE_ARN": ROLE_ARN,
    }


def write_tke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token: str | None = None) -> Path:
    """:func:`tke_environment` in this process's environment; returns the token file."""
    environment = tke_environment(tmp_path, token)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return Path(environment["TKE_WEB_IDENTITY_TOKEN_FILE"])


def rotate_key(emulator: object) -> None:
    """The emulator's key pair is rotated while a wait runs: every request is refused (a permanent error)."""
    from airflow_cvm_export.emulator.auth import Credentials, KeyRing

    emulator.cvm.credentials = emulator.cos.credentials = KeyRing(Credentials(SECRET_ID, "rotated-secret-key"))  # type: ignore[attr-defined]

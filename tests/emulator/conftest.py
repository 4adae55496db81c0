"""Fixtures for the emulator tests: a started emulator wrapped in a small signed-request client."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from tencentcloud.common import credential
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.cvm.v20170312 import cvm_client

from airflow_cvm_export.emulator import Emulator
from airflow_cvm_export.utils.signing import sign_cos, sign_tc3

SECRET_ID = "AKIDEMULATOR"
SECRET_KEY = "emulator-secret-key"
REGION = "ap-guangzhou"


class Client:
    """Drives one emulator: the official SDK, raw signed API 3.0 calls and signed COS requests."""

    secret_id = SECRET_ID
    secret_key = SECRET_KEY

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.host = emu.url.removeprefix("http://")
        self.session = requests.Session()

    def sdk(
        self, secret_id: str = SECRET_ID, secret_key: str = SECRET_KEY, token: str | None = None, region: str = REGION
    ) -> cvm_client.CvmClient:
        profile = ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=self.host, reqTimeout=10))
        return cvm_client.CvmClient(credential.Credential(secret_id, secret_key, token), region, profile)

    def signed_headers(
        self,
        action: str,
        body: bytes,
        *,
        secret_id: str = SECRET_ID,
        secret_key: str = SECRET_KEY,
        token: str | None = None,
        timestamp: int | None = None,
        region: str | None = REGION,
        version: str = "2017-03-12",
        content_type: str = "application/json",
        service: str = "cvm",
    ) -> dict[str, str]:
        return sign_tc3(
            secret_id=secret_id,
            secret_key=secret_key,
            service=service,
            host=self.host,
            action=action,
            version=version,
            payload=body,
            timestamp=int(time.time()) if timestamp is None else timestamp,
            region=region,
            token=token,
            content_type=content_type,
        )

    def post(self, headers: dict[str, str], body: bytes) -> requests.Response:
        return self.session.post(self.emu.url + "/", data=body, headers=headers, timeout=10)

    def call(self, action: str, params: dict[str, Any] | None = None, **sign: Any) -> dict[str, Any]:
        """A signed API 3.0 call; returns the ``Response`` object."""
        body = json.dumps(params or {}).encode()
        answer = self.post(self.signed_headers(action, body, **sign), body)
        assert answer.status_code == 200
        return answer.json()["Response"]

    def error(self, action: str, params: dict[str, Any] | None = None, **sign: Any) -> str:
        """The error code of a call that must fail."""
        response = self.call(action, params, **sign)
        assert "Error" in response, response
        assert response["RequestId"]
        return response["Error"]["Code"]

    def cos(
        self,
        method: str,
        bucket: str,
        key: str = "",
        params: dict[str, str] | None = None,
        *,
        token: str | None = None,
        secret_id: str = SECRET_ID,
        secret_key: str = SECRET_KEY,
        start: int | None = None,
        sign: bool = True,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """A COS request signed like the hook does: decoded path ``/<bucket>/<key>``, Host (and ``headers``) signed."""
        params = params or {}
        path = f"/{bucket}/{key}"
        headers = {"Host": self.host, **(headers or {})}
        if token:
            headers["x-cos-security-token"] = token
        begin = int(time.time()) - 60 if start is None else start
        if sign:
            headers["Authorization"] = sign_cos(
                secret_id=secret_id,
                secret_key=secret_key,
                method=method,
                path=path,
                params=params,
                headers=headers,
                start=begin,
                end=begin + 600,
            )
        return self.session.request(
            method, self.emu.url + requests.utils.quote(path), params=params, headers=headers, timeout=10
        )

    def export(self, image_ids: list[str], bucket: str = "exports-1250000000", **params: Any) -> dict[str, Any]:
        return self.call("ExportImages", {"ImageIds": image_ids, "BucketName": bucket, **params})

    def wait_exports(self, deadline: float = 15.0) -> list[dict[str, Any]]:
        """Wait until no export is running; return the exports."""
        stop = time.monotonic() + deadline
        while True:
            exports = self.emu.state()["exports"]
            if all(e["status"] != "running" for e in exports) or time.monotonic() > stop:
                return exports
            time.sleep(0.05)


@pytest.fixture
def start_emulator() -> Iterator[Callable[..., Client]]:
    """Factory: ``start_emulator(**Emulator kwargs)`` returns a :class:`Client`; all are stopped at teardown."""
    started: list[Emulator] = []

    def start(**kwargs: Any) -> Client:
        kwargs.setdefault("export_seconds", 0.2)
        emu = Emulator(**kwargs).start()
        started.append(emu)
        return Client(emu)

    yield start
    for emu in started:
        emu.stop()


@pytest.fixture
def client(start_emulator: Callable[..., Client]) -> Client:
    return start_emulator()

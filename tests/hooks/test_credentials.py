"""Every credential source against the emulator's STS and metadata service, through both hooks: an export
started, waited for and its objects listed; renewal before expiry, once for all concurrent callers; the
re-sign after ``AuthFailure.TokenFailure``; and errors naming the source and the field, without secrets."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import time_machine

from airflow_cvm_export.emulator import Emulator
from airflow_cvm_export.hooks import credentials
from airflow_cvm_export.hooks.cvm import CvmAsyncHook, CvmHook
from airflow_cvm_export.utils.errors import TencentCloudConfigError, TencentCloudCredentialError
from tests.credentials import ROLE_ARN, SECRET_ID, SECRET_KEY, write_tke

BUCKET = "exports-1250000000"
IMAGE = "img-centos01"
NO_LIMITS = {"ExportImages": 0, "DescribeImages": 0}


@pytest.fixture(autouse=True)
def fresh_providers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test its own process-wide provider registry, home directory and environment."""
    monkeypatch.setattr(credentials, "_PROVIDERS", {})
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY", "TENCENTCLOUD_TOKEN", *credentials.TKE_VARIABLES):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, progression="immediate") as emu:
        yield emu


@pytest.fixture
def hook(tencentcloud_conn: Callable[..., str], emulator: Emulator) -> Callable[..., CvmHook | CvmAsyncHook]:
    """``hook(kind="sync", login=None, password=None, **extra)``: a hook whose STS and metadata service are the
    emulator's."""

    def make(kind: str = "sync", *, login: str | None = None, password: str | None = None, **extra: Any) -> Any:
        extra = {
            "endpoint": emulator.url,
            "sts_endpoint": emulator.url,
            "metadata_endpoint": emulator.url,
            "region": "ap-guangzhou",
            "rate_limits": NO_LIMITS,
            **extra,
        }
        conn_id = tencentcloud_conn(f"tc_{kind}", login=login, password=password, **extra)
        return (CvmHook if kind == "sync" else CvmAsyncHook)(conn_id, retry_limit=2, retry_delay=0.01)

    return make


def export_through(hook: CvmHook | CvmAsyncHook) -> list[str]:
    """Start an export, wait until its image is back to NORMAL, list the objects: what the example DAGs do."""

    async def main(hook: CvmAsyncHook) -> list[str]:
        try:
            started = await hook.export_images(image_ids=[IMAGE], bucket_name=BUCKET)
            assert (await hook.describe_images([IMAGE]))[0]["ImageState"] == "NORMAL"
            objects = await hook.list_cos_objects(BUCKET, "")
            assert {o["key"] for o in objects} >= {path.lstrip("/") for path in started["CosPaths"]}
            return started["CosPaths"]
        finally:
            await hook.aclose()

    if isinstance(hook, CvmAsyncHook):
        return asyncio.run(main(hook))
    started = hook.export_images(image_ids=[IMAGE], bucket_name=BUCKET)
    assert hook.describe_images([IMAGE])[0]["ImageState"] == "NORMAL"
    assert hook.head_cos_object(BUCKET, started["CosPaths"][0]) is not None
    hook.close()
    return started["CosPaths"]


def write_tccli(profile: str = "default", **document: Any) -> Path:
    path = Path.home() / ".tccli" / f"{profile}.credential"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"type": "default", "secretId": SECRET_ID, "secretKey": SECRET_KEY, **document}))
    return path


def counts(emulator: Emulator) -> dict[str, dict[str, int]]:
    return emulator.state()["requests"]


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize(
    "source",
    [
        "connection",
        "environment",
        "profile-tccli",
        "profile-ini",
        "cvm_role",
        "oidc",
        "connection+role",
        "cvm_role+role",
    ],
)
def test_each_source_exports(
    source: str,
    kind: str,
    hook: Callable[..., Any],
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    extra: dict[str, Any] = {}
    login = password = None
    name, _, role = source.partition("+")
    if name == "connection":
        login, password = SECRET_ID, SECRET_KEY
        extra["credential_source"] = "connection"
    elif name == "environment":
        monkeypatch.setenv("TENCENTCLOUD_SECRET_ID", SECRET_ID)
        monkeypatch.setenv("TENCENTCLOUD_SECRET_KEY", SECRET_KEY)
        extra["credential_source"] = "environment"
    elif name == "profile-tccli":
        write_tccli("exports")
        extra.update(credential_source="profile", profile_name="exports")
    elif name == "profile-ini":
        ini = Path.home() / ".tencentcloud" / "credentials"
        ini.parent.mkdir(parents=True)
        ini.write_text(f"[default]\nsecret_id = {SECRET_ID}\nsecret_key = {SECRET_KEY}\n")
        extra["credential_source"] = "profile"
    elif name == "cvm_role":
        extra["credential_source"] = "cvm_role"
    elif name == "oidc":
        write_tke(tmp_path, monkeypatch)
        extra["credential_source"] = "oidc"
    if role:
        extra.update(role_arn=ROLE_ARN, role_session_name="exports", external_id="ext-1", policy={"version": "2.0"})
    assert export_through(hook(kind, login=login, password=password, **extra))
    seen = counts(emulator)
    assert seen["ExportImages"] == {"ok": 1}
    assert all(outcome == "ok" for outcomes in seen.values() for outcome in outcomes), seen
    assert seen.get("AssumeRole", {}).get("ok", 0) == (1 if role else 0)
    assert seen.get("AssumeRoleWithWebIdentity", {}).get("ok", 0) == (1 if name == "oidc" else 0)
    assert seen.get("Metadata Credentials", {}).get("ok", 0) == (1 if name == "cvm_role" else 0)


@pytest.mark.parametrize(
    ("prepare", "answered"),
    [("environment", "environment"), ("profile", "profile"), ("nothing", "cvm_role"), ("tke", "cvm_role")],
)
def test_default_chain_takes_the_first_source_that_answers(
    prepare: str,
    answered: str,
    hook: Callable[..., Any],
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO")
    if prepare == "environment":
        monkeypatch.setenv("TENCENTCLOUD_SECRET_ID", SECRET_ID)
        monkeypatch.setenv("TENCENTCLOUD_SECRET_KEY", SECRET_KEY)
    elif prepare == "profile":
        write_tccli()
    elif prepare == "tke":
        write_tke(tmp_path, monkeypatch)
    assert export_through(hook(credential_source="default"))
    assert f"credentials from {answered!r}" in caplog.text


def test_default_chain_falls_through_to_oidc(
    hook: Callable[..., Any], emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tke(tmp_path, monkeypatch)
    dead = "http://127.0.0.1:9"  # discard port: nothing listens
    assert export_through(hook(credential_source="default", metadata_endpoint=dead))
    assert counts(emulator)["AssumeRoleWithWebIdentity"] == {"ok": 1}


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_short_lived_credentials_are_renewed_before_they_expire(
    kind: str, hook: Callable[..., Any], emulator: Emulator
) -> None:
    """Lifetime 3 s: renewed after 2 s (a third of the lifetime left); never refused for expiry.

    The clock (time-machine: this process's wall clock, so the hook's and the in-process emulator's
    STS and signature checks alike) moves on 0.5 s after each call instead of the test sleeping.
    """
    emulator.credential_lifetime = 3
    made = hook(kind, login=SECRET_ID, password=SECRET_KEY, role_arn=ROLE_ARN)

    with time_machine.travel(time.time(), tick=True) as clock:

        async def calls(hook: CvmAsyncHook) -> None:
            try:
                for _ in range(16):
                    await hook.call("DescribeRegions", {})
                    clock.shift(0.5)
            finally:
                await hook.aclose()

        if kind == "async":
            asyncio.run(calls(made))
        else:
            for _ in range(16):
                made.call("DescribeRegions", {})
                clock.shift(0.5)
    seen = counts(emulator)
    assert seen["DescribeRegions"] == {"ok": 16}
    # 8 s of calls on 3 s credentials renewed after 2 s: 4 or 5 AssumeRoles, at most 2 per lifetime.
    assert 3 <= seen["AssumeRole"]["ok"] <= 6, seen


def test_one_renewal_for_many_threads_and_coroutines(hook: Callable[..., Any], emulator: Emulator) -> None:
    made = hook(credential_source="cvm_role")
    made.call("DescribeRegions", {})
    provider = credentials.provider_for(made.config.credentials)
    assert provider.fetches == 1
    # Make the current pair due (expired, so every caller has to wait for the renewal).
    provider._current = replace(provider.current(), expires=time.time() - 1)
    barrier = threading.Barrier(16)

    def worker() -> None:
        barrier.wait()
        provider.get()

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert provider.fetches == 2

    provider._current = replace(provider.current(), expires=time.time() - 1)

    async def many() -> None:
        await asyncio.gather(*(provider.aget() for _ in range(500)))

    asyncio.run(many())
    assert provider.fetches == 3
    # Due but still valid: every coroutine goes on with it at once; one renewal runs meanwhile.
    now = time.time()
    valid = provider._current = replace(provider.current(), fetched=now - 7000, expires=now + 200)

    async def without_waiting() -> list[credentials.KeyPair]:
        got = await asyncio.gather(*(provider.aget() for _ in range(500)))
        while provider.fetches == 3:
            await asyncio.sleep(0.01)
        return got

    assert all(keys is valid for keys in asyncio.run(without_waiting()))
    assert provider.fetches == 4 and provider.current() is not valid
    assert counts(emulator)["Metadata Credentials"] == {"ok": 4}


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_refused_token_renews_and_re_signs_once(kind: str, hook: Callable[..., Any], emulator: Emulator) -> None:
    made = hook(kind, login=SECRET_ID, password=SECRET_KEY, role_arn=ROLE_ARN)
    settings = (made.config if kind == "sync" else asyncio.run(made.aconfig())).credentials
    provider = credentials.provider_for(settings)
    current = provider.get()
    # The server expires the pair while this process still thinks it valid (as after a clock jump).
    keys = emulator.credentials.keys
    keys._temporary[current.secret_id] = replace(keys._temporary[current.secret_id], expires=time.time() - 1)
    if kind == "sync":
        made.call("DescribeRegions", {})
    else:

        async def call() -> None:
            try:
                await made.call("DescribeRegions", {})
            finally:
                await made.aclose()

        asyncio.run(call())
    assert counts(emulator)["DescribeRegions"] == {"AuthFailure.TokenFailure": 1, "ok": 1}
    assert provider.fetches == 2


def test_a_failed_renewal_keeps_valid_credentials(hook: Callable[..., Any], emulator: Emulator) -> None:
    made = hook(credential_source="cvm_role")
    made.call("DescribeRegions", {})
    provider = credentials.provider_for(made.config.credentials)
    now = time.time()
    kept = provider._current = replace(provider.current(), fetched=now - 7000, expires=now + 200)  # due, valid
    emulator.add_fault(["http5xx"], service="metadata")
    made.call("DescribeRegions", {})
    assert provider.current() is kept
    assert counts(emulator)["Metadata RoleName"]["fault:http5xx"] == credentials.FETCH_ATTEMPTS
    made.call("DescribeRegions", {})  # no new attempt for a while
    assert counts(emulator)["Metadata RoleName"]["fault:http5xx"] == credentials.FETCH_ATTEMPTS
    assert counts(emulator)["DescribeRegions"] == {"ok": 3}


def secrets_of(emulator: Emulator) -> list[str]:
    """Every secret the emulator issued or accepts."""
    issued = list(emulator.credentials.keys._temporary.values())
    return [SECRET_KEY, *(c.secret_key for c in issued), *(c.token for c in issued if c.token)]


@pytest.mark.parametrize(
    ("case", "error", "words"),
    [
        ("wrong role", TencentCloudConfigError, ["role_arn", "ResourceNotFound.RoleNotFound"]),
        ("missing token file", TencentCloudConfigError, ["credential_source 'oidc'", "TKE_WEB_IDENTITY_TOKEN_FILE"]),
        ("bad web identity", TencentCloudConfigError, ["TKE_WEB_IDENTITY_TOKEN_FILE", "WebIdentityTokenError"]),
        ("missing TKE variable", TencentCloudConfigError, ["credential_source 'oidc'", "TKE_ROLE_ARN"]),
        ("dead metadata service", TencentCloudCredentialError, ["credential_source 'cvm_role'", "metadata_endpoint"]),
        ("wrong cvm role name", TencentCloudConfigError, ["credential_source 'cvm_role'", "cvm_role_name"]),
        ("sts outage", TencentCloudCredentialError, ["credential_source 'cvm_role' + role_arn", "STS AssumeRole"]),
        ("no profile", TencentCloudConfigError, ["credential_source 'profile'", "profile_name 'missing'"]),
        ("tccli cvm-role profile", TencentCloudConfigError, ["credential_source 'profile'", "cvm-role"]),
    ],
)
def test_errors_name_the_source_and_field_without_secrets(
    case: str,
    error: type[Exception],
    words: list[str],
    hook: Callable[..., Any],
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    monkeypatch.setattr(credentials, "FETCH_BACKOFF", 0.01)
    extra: dict[str, Any] = {"credential_source": "cvm_role"}
    if case == "wrong role":
        extra["role_arn"] = ROLE_ARN.replace("AirflowCvmExport", "NoSuchRole")
    elif case == "missing token file":
        write_tke(tmp_path, monkeypatch).unlink()
        extra["credential_source"] = "oidc"
    elif case == "bad web identity":
        write_tke(tmp_path, monkeypatch, token="not-a-jwt")
        extra["credential_source"] = "oidc"
    elif case == "missing TKE variable":
        write_tke(tmp_path, monkeypatch)
        monkeypatch.delenv("TKE_ROLE_ARN")
        extra["credential_source"] = "oidc"
    elif case == "dead metadata service":
        extra["metadata_endpoint"] = "http://127.0.0.1:9"
    elif case == "wrong cvm role name":
        extra["cvm_role_name"] = "NotMyRole"
    elif case == "sts outage":
        extra["role_arn"] = ROLE_ARN
        emulator.add_fault(["http5xx"], service="sts")
    elif case == "no profile":
        extra.update(credential_source="profile", profile_name="missing")
    elif case == "tccli cvm-role profile":
        write_tccli(type="cvm-role")
        extra["credential_source"] = "profile"
    with pytest.raises(error) as raised:
        hook(**extra).call("DescribeRegions", {})
    text = str(raised.value)
    for word in words:
        assert word in text, text
    for secret in secrets_of(emulator):
        assert secret not in text and secret not in caplog.text
    assert "DescribeRegions" not in counts(emulator)  # nothing sent without credentials

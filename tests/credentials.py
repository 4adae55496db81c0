"""Fake credentials used across the tests; the secret parts must never show up in logs or errors."""

SECRET_ID = "AKIDTESTSECRETID"
SECRET_KEY = "test-secret-key-never-logged"
TOKEN = "test-session-token-never-logged"


def rotate_key(emulator: object) -> None:
    """The emulator's key pair is rotated while a wait runs: every request is refused (a permanent error)."""
    from airflow_cvm_export.emulator.auth import Credentials, KeyRing

    emulator.cvm.credentials = emulator.cos.credentials = KeyRing(Credentials(SECRET_ID, "rotated-secret-key"))  # type: ignore[attr-defined]

"""Fake credentials used across the tests; the secret parts must never show up in logs or errors."""

SECRET_ID = "AKIDTESTSECRETID"
SECRET_KEY = "test-secret-key-never-logged"
TOKEN = "test-session-token-never-logged"

"""The sensor tests share the operator tests' emulator, connection and context fixtures."""

from tests.operators.conftest import context, emulator, start_emulator  # noqa: F401

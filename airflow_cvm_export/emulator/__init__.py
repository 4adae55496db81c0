"""Offline emulator of Tencent Cloud CVM API 3.0 (ExportImages, DescribeImages, DescribeRegions) and COS.

Use it like moto: ``with Emulator() as emu:`` then point a connection's ``endpoint`` at ``emu.url``.
See docs/emulator.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_cvm_export.emulator.server import Emulator

__all__ = ["Emulator"]


def __getattr__(name: str) -> Any:
    """``Emulator`` is imported on first use: importing the package (the pytest plugin does, in every
    pytest session of an environment the provider is installed in) costs nothing of the server."""
    if name == "Emulator":
        from airflow_cvm_export.emulator.server import Emulator

        return Emulator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

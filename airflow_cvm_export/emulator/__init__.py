"""Offline emulator of Tencent Cloud CVM API 3.0 (ExportImages, DescribeImages, DescribeRegions) and COS.

Use it like moto: ``with Emulator() as emu:`` then point a connection's ``endpoint`` at ``emu.url``.
See docs/emulator.md.
"""

from airflow_cvm_export.emulator.server import Emulator

__all__ = ["Emulator"]

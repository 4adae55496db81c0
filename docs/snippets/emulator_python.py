"""docs/emulator.md, "Starting it": the emulator from Python (tests/docs/test_snippets.py runs this file)."""

from airflow_cvm_export.emulator import Emulator

# [START howto_emulator_python]
with Emulator(export_seconds=0.5) as emu:  # port=0 by default: a free port
    print(emu.url)  # "http://127.0.0.1:<port>"
    state = emu.state()  # same document as GET /_emulator/state
    catalog = emu.catalog()  # same document as GET /_emulator/catalog
# [END howto_emulator_python]

assert state["exports"] == [] and catalog["images"]

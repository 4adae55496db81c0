"""Run the ``airflow`` command line with this machine's wall clock shifted, as on a badly synced host.

``python -m tests.e2e.skewed_clock <seconds> <airflow arguments...>``: every wall-clock reading of
the process (``time.time``, ``datetime.now``, ``gmtime``...) is ``<seconds>`` off and keeps
ticking (time-machine); monotonic clocks are untouched. The emulator keeps the true time.
"""

from __future__ import annotations

import sys
import time

import time_machine

if __name__ == "__main__":
    offset = float(sys.argv[1])
    time_machine.travel(time.time() + offset, tick=True).start()
    from airflow.__main__ import main

    sys.argv = ["airflow", *sys.argv[2:]]
    main()

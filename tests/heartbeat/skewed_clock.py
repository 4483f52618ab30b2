"""Run kissclusterd with its wall clock offset by the number of seconds in a file, re-read live.

    skewed_clock.py OFFSET_FILE run --config ... --run-dir ...

The clock-jump scenario's seam: stepping the real clock would step it for every process on
this shared host, and a time namespace cannot offset CLOCK_REALTIME, so only this process's
time.time() is shifted (the monotonic clock stays real, as it does when a clock is stepped).
"""

import sys
import time
from pathlib import Path

from kisscluster.heartbeat.cli import main

offset_file = Path(sys.argv[1])
real_time = time.time


def skewed_time() -> float:
    return real_time() + float(offset_file.read_text())


time.time = skewed_time
sys.exit(main(sys.argv[2:]))

"""How long this process has existed: the start-up figure (process start -> first training step) of metrics.json.

psutil's create_time() adds the process's start, counted from boot, to /proc/stat's boot time, which the kernel
gives in whole seconds: on Linux the start comes out up to a second too early, by the same fraction for every process
of one boot (psutil issue 877). Both of the kernel's own figures below count from boot, so nothing is rounded.
"""

import os
import time
from pathlib import Path

import psutil

STAT = Path("/proc/self/stat")
START_TIME_FIELD = 19  # "starttime" (field 22 of proc_pid_stat(5)), counted after the ")" closing the command name


def seconds_since_process_start() -> float:
    """Seconds since this process was created (10 ms resolution on Linux: clock ticks)."""
    try:
        ticks = int(STAT.read_text().rsplit(")", 1)[1].split()[START_TIME_FIELD])
        return time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, AttributeError, ValueError, IndexError):  # not Linux: psutil's figure, the best there is
        return time.time() - psutil.Process().create_time()

"""metrics.json's start-up figure counts from the process's real start (not up to a second before it)."""

import subprocess
import sys
import time

import pytest

from peftlab.trainer.process_clock import seconds_since_process_start

TICK = 0.011  # /proc's start time is in clock ticks (10 ms); the figure can round up by one


def test_a_fresh_process_is_no_older_than_its_launch():
    """A child launched at t0 cannot have existed longer than (its own clock reading - t0). psutil's create_time()
    added up to 1 s here (its boot time is whole seconds): the figure every start-up target was checked against."""
    probe = "import time; from peftlab.trainer.process_clock import seconds_since_process_start as age; "
    probe += "a = age(); print(a, time.time())"
    for _ in range(3):
        launched = time.time()
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
        age, now = map(float, out.split())
        assert 0 < age <= now - launched + TICK


def test_this_process_started_before_the_test():
    if not sys.platform.startswith("linux"):
        pytest.skip("the /proc clock is Linux's; elsewhere psutil's figure is used as it is")
    first = seconds_since_process_start()
    time.sleep(0.05)
    assert 0.05 - TICK <= seconds_since_process_start() - first <= 1.0

"""run/collector.py and cli.skip_final_collection: what they promise about Python's garbage collector."""

import gc
import subprocess
import sys
import weakref

import pytest

from peftlab.run import collector
from peftlab.run.collector import collecting, collections_deferred, imports_frozen


class Node:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self):
        self.me = self


@pytest.fixture
def collector_state(monkeypatch):
    """A process that froze nothing yet; afterwards the test process's collector as it was."""
    enabled = gc.isenabled()
    gc.unfreeze()
    monkeypatch.setattr(collector._Frozen, "imports", False)
    yield
    gc.unfreeze()
    gc.enable() if enabled else gc.disable()


def job() -> tuple[weakref.ref, weakref.ref, int]:
    """One training job's shape (run.train): set-up imports, freezes, builds an object in a cycle, the fit runs."""
    with collections_deferred():
        assert not gc.isenabled(), "set-up runs without automatic collections"
        imported = Node()  # stands for what the libraries' imports leave alive
        imports_frozen()
        frozen = gc.get_freeze_count()
        built = Node()
        with collecting():
            assert gc.isenabled(), "the fit collects"
            assert gc.get_freeze_count() == frozen, "over the job's objects too: they are not frozen"
        return weakref.ref(imported), weakref.ref(built), frozen


def test_a_sweeps_next_job_frees_the_last_ones_objects_and_never_unfreezes(collector_state):
    imported, first, frozen = job()
    assert first() is not None and frozen > 0
    _, second, frozen_again = job()
    assert first() is None, "the next job's collection freed the first job's objects"
    assert imported() is not None, "the imports stay frozen: never unfrozen, never walked again"
    assert frozen_again <= frozen, "one freeze a process: the second job froze nothing more"
    job()
    assert second() is None and gc.isenabled()


def test_fit_on_its_own_leaves_the_collector_alone(collector_state):
    with collecting():
        assert gc.get_freeze_count() == 0


def test_a_command_freezes_the_heap_at_exit():
    """At exit every live object is frozen, so the interpreter's last collection does not walk them."""
    code = (
        "import atexit, gc; from peftlab.cli import run_command; run_command(lambda: None); "
        "assert gc.get_freeze_count() == 0; atexit._run_exitfuncs(); print(gc.get_freeze_count())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert int(done.stdout.split()[-1]) > 1000

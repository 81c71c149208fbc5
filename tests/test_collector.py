"""run/collector.py and cli.skip_final_collection: what they promise about Python's garbage collector."""

import gc
import subprocess
import sys
import weakref

import pytest

from peftlab.run.collector import collections_deferred, imports_frozen, start_up_frozen


class Node:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self):
        self.me = self


@pytest.fixture
def collector_state():
    """The test process's collector as it was (these tests freeze and disable it)."""
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    gc.enable() if enabled else gc.disable()


def job() -> weakref.ref:
    """One training job's shape: set-up builds an object in a cycle, the fit runs, the object is dropped."""
    with collections_deferred():
        assert not gc.isenabled(), "set-up runs without automatic collections"
        built = Node()
        with start_up_frozen():
            assert gc.isenabled(), "the fit collects"
            assert gc.get_freeze_count() > 0, "over what the fit creates only"
        return weakref.ref(built)


def test_a_sweeps_next_job_frees_what_the_last_one_froze(collector_state):
    gc.unfreeze()
    first = job()
    assert first() is not None, "frozen with the start-up objects, not collected by the fit"
    second = job()
    assert first() is None, "the next job lets the first job's objects go"
    third = job()
    assert second() is None and third() is not None
    assert gc.isenabled()


def test_a_job_built_after_the_imports_froze_is_freed_without_unfreezing(collector_state):
    """train(): the freeze comes between the imports and the job's objects, so it holds the imports only."""
    gc.unfreeze()

    def frozen_job():
        with collections_deferred():
            imported = Node()  # stands for what the libraries' imports leave alive
            imports_frozen()
            frozen = gc.get_freeze_count()
            built = Node()
            with start_up_frozen():
                assert gc.get_freeze_count() == frozen, "the job's objects are not frozen"
            return weakref.ref(imported), weakref.ref(built), frozen

    imported, first, frozen = frozen_job()
    assert first() is not None
    imported_again, second, frozen_again = frozen_job()
    assert first() is None, "the next job's collection freed the first job's objects"
    assert imported() is not None, "the imports stay frozen: never unfrozen, never walked again"
    assert frozen_again <= frozen, "one freeze a process: the second job froze nothing more"


def test_fit_on_its_own_leaves_the_collector_alone(collector_state):
    gc.unfreeze()
    with start_up_frozen():
        assert gc.get_freeze_count() == 0


def test_a_command_freezes_the_heap_at_exit():
    """At exit every live object is frozen, so the interpreter's last collection does not walk them."""
    code = (
        "import atexit, gc; from peftlab.cli import run_command; run_command(lambda: None); "
        "assert gc.get_freeze_count() == 0; atexit._run_exitfuncs(); print(gc.get_freeze_count())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert int(done.stdout.split()[-1]) > 1000

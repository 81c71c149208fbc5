"""Python's garbage collector around training jobs: no full collections over what start-up builds.

Importing torch, transformers, peft and Lightning creates about a million long-lived objects, and the collector's
full collections walk all of them each time the heap has grown by a quarter: 10 such walks, 1.5 s of a 2-core
start-up (bench/README.md, "Start-up, sweep overhead"). Nothing built before a fit is garbage worth that walk, so a
training job runs its set-up without collections; at the fit everything alive is frozen (gc.freeze: the collector
skips it from then on) and collections resume over what the fit creates. The objects a job froze with the imports
(its model, trainer, data) are released when the next job of a sweep starts: one full walk per process, after which
only the imports stay frozen.
"""

import gc
from collections.abc import Iterator
from contextlib import contextmanager


class _Frozen:
    with_a_job = False  # the frozen objects include a job's own, which the next job must let go


@contextmanager
def collections_deferred() -> Iterator[None]:
    """A training job's set-up without automatic collections (the fit turns them back on: start_up_frozen)."""
    if _Frozen.with_a_job:  # a sweep's earlier job: let its objects go, keep the imports frozen
        gc.unfreeze()
        _Frozen.with_a_job = False
        gc.collect()
        gc.freeze()
    else:
        gc.collect()  # what is not frozen: an earlier job's garbage, or the little that exists before imports
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextmanager
def start_up_frozen() -> Iterator[None]:
    """Within collections_deferred: freeze what set-up built (once per process), collect during the fit."""
    if gc.isenabled():  # fit() called on its own: nothing was deferred
        yield
        return
    if not gc.get_freeze_count():
        gc.freeze()
        _Frozen.with_a_job = True
    gc.enable()
    try:
        yield
    finally:
        gc.disable()

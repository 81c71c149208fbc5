"""Python's garbage collector around training jobs: no full collections over what start-up builds.

Importing torch, transformers, peft and Lightning creates about a million long-lived objects, and the collector's
full collections walk all of them each time the heap has grown by a quarter: 10 such walks, 1.5 s of a 2-core
start-up (bench/README.md, "Start-up, sweep overhead"). Nothing built before a fit is garbage worth that walk, so a
training job runs its set-up without collections. Once the libraries its fit needs are imported, everything alive is
frozen (gc.freeze: the collector skips it from then on); the job's own objects (model, trainer, data), built after
that, stay collectable, and collections resume when the fit starts. A sweep's next job frees them with a collection
over the unfrozen objects alone. (Freezing at the fit instead froze the first job's objects with the imports: the
second job had to unfreeze and walk everything once, 0.5 s on 2 cores.)
"""

import gc
from collections.abc import Iterator
from contextlib import contextmanager


class _Frozen:
    imports = False  # gc.freeze() ran: kept here, as gc.get_freeze_count() walks the frozen list (40 ms a call)


@contextmanager
def collections_deferred() -> Iterator[None]:
    """A training job's set-up without automatic collections (the fit turns them back on: collecting)."""
    gc.collect()  # what is not frozen: an earlier job's objects, or the little that exists before the imports
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def imports_frozen() -> None:
    """Within collections_deferred, after a job's imports and before it builds anything: freeze (once a process)."""
    if not _Frozen.imports and not gc.isenabled():
        gc.freeze()
        _Frozen.imports = True


@contextmanager
def collecting() -> Iterator[None]:
    """Within collections_deferred: the fit collects (over what is not frozen). Elsewhere: nothing changes."""
    if gc.isenabled():  # fit() called on its own: nothing was deferred
        yield
        return
    gc.enable()
    try:
        yield
    finally:
        gc.disable()

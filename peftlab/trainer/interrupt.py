"""SaveOnSigterm: a SIGTERM (spot reclaim, scheduler preemption) saves last.ckpt before the process exits."""

import logging
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

from peftlab.rundir import LAST

log = logging.getLogger(__name__)


class SaveOnSigterm(pl.Callback):
    """Writes `<dirpath>/last.ckpt` when Lightning stops the fit for a SIGTERM, so resume=auto loses no steps.

    Lightning's signal handler only sets `trainer.received_sigterm`; the loops then raise `SIGTERMException` after
    the current batch and call `on_exception`. Lightning's `OnExceptionCheckpoint` would also save on every other
    exception (a NaN, a bug), turning a broken state into the one resume continues from; this saves only on SIGTERM,
    under the name resume=auto reads, through the trainer's (atomic) CheckpointIO.
    """

    def __init__(self, dirpath: str):
        self.dirpath = Path(dirpath)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        path = self.dirpath / LAST
        trainer.save_checkpoint(path)  # every rank calls it (it synchronises); rank 0 writes
        if trainer.is_global_zero:
            log.warning("SIGTERM: saved %s at step %d", path, trainer.global_step)

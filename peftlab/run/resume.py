"""resume=auto: continue from paths.checkpoint_dir/last.ckpt when a previous attempt left one (spot restarts)."""

import logging
from pathlib import Path

from peftlab.config import RunSettings

log = logging.getLogger(__name__)

LAST = "last.ckpt"  # ModelCheckpoint(save_last=true) writes it at every checkpoint


def checkpoint_to_resume(settings: RunSettings, checkpoint_dir: str | Path) -> str | None:
    """The ckpt_path for Trainer.fit: an explicit ckpt_path wins; resume=auto takes last.ckpt if it exists.

    Lightning restores the trainable weights, optimizer, LR scheduler and loop state (epoch, global step, position
    in the epoch) from it, so a job restarted after a spot interruption continues instead of starting at step 0.
    """
    if settings.ckpt_path or settings.resume != "auto":
        return settings.ckpt_path
    last = Path(checkpoint_dir) / LAST
    if last.is_file():
        log.info("resume=auto: continuing from %s", last)
        return str(last)
    log.info("resume=auto: no %s in %s, starting from scratch", LAST, checkpoint_dir)
    return None

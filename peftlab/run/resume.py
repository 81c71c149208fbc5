"""resume=auto: continue from paths.checkpoint_dir/last.ckpt when a previous attempt left one (spot restarts)."""

import logging
from pathlib import Path

from peftlab.errors import ConfigError
from peftlab.rundir import RunDir

log = logging.getLogger(__name__)

LIGHTNING_NAMES = ("last", "best", "hpc", "registry")  # ckpt_path values Lightning resolves itself


def unreadable(path: str | Path) -> str | None:
    """Why `path` is not a checkpoint Lightning can resume from (None when it is).

    Opens it as Lightning does (torch.load, weights_only) so a truncated file from a kill mid-save (or a copy cut
    short) is caught here with its name, not deep inside Trainer.fit after the model was built. Memory-mapped: the
    zip index and the small entries are read, the tensors are not, so checking a full fine-tune's multi-GB
    checkpoint costs little before Lightning reads it for real.
    """
    import torch

    path = Path(path)
    if path.is_dir():  # DeepSpeed writes a checkpoint as a folder; its engine reads it back, not torch.load
        return deepspeed_folder_problem(path)
    if not path.is_file():
        return "no such file"
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # any failure to load is the answer
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'cannot be loaded'}"
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "loops" not in checkpoint:
        return "no Lightning training state (state_dict, loops) in it"
    return None


def deepspeed_folder_problem(path: Path) -> str | None:
    """Why a checkpoint folder is not one DeepSpeed can resume from: its `latest` file names the tag folder holding
    the model states (Lightning saves with tag "checkpoint"); a save cut short lacks one of them."""
    latest = path / "latest"
    if not latest.is_file():
        return "a folder without DeepSpeed's 'latest' file (not a finished DeepSpeed checkpoint)"
    tag = latest.read_text().strip()
    if not any((path / tag).glob("*model_states.pt")):
        return f"DeepSpeed checkpoint folder without model states in {tag}/"
    return None


def checkpoint_to_resume(ckpt_path: str | None, resume: str | None, checkpoint_dir: str | Path) -> str | None:
    """The ckpt_path for Trainer.fit: an explicit ckpt_path wins; resume=auto takes last.ckpt if it is readable.

    Lightning restores the trainable weights, optimizer, LR scheduler and loop state (epoch, global step, position
    in the epoch) from it, so a job restarted after a spot interruption continues instead of starting at step 0.
    A broken last.ckpt (e.g. copied back incompletely) falls back to the newest readable checkpoint in the folder,
    else a fresh start: the job keeps going instead of crash-looping on the same file.
    """
    if ckpt_path:
        if ckpt_path not in LIGHTNING_NAMES and (reason := unreadable(ckpt_path)):
            raise ConfigError(f"ckpt_path={ckpt_path}: not a readable checkpoint ({reason})")
        return ckpt_path
    if resume != "auto":
        return None
    run = RunDir(".", checkpoint_dir)  # only its checkpoint folder is read
    for path in run.saved_checkpoints():  # last.ckpt (a file, or a DeepSpeed folder) first, then newest first
        if not (reason := unreadable(path)):
            log.info("resume=auto: continuing from %s", path)
            return str(path)
        log.warning("resume=auto: %s is not a readable checkpoint (%s); trying older checkpoints", path, reason)
    log.info("resume=auto: no readable checkpoint in %s, starting from scratch", run.checkpoints)
    return None

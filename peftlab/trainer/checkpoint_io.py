"""AtomicCheckpointIO: checkpoints written to a temp file in their own folder, fsynced, then renamed into place."""

import os
import tempfile
from pathlib import Path

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning_fabric.utilities.cloud_io import get_filesystem
from pytorch_lightning.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """A kill at any moment leaves either the old last.ckpt or the new one, never a half-written file.

    Why not Lightning's own: `TorchCheckpointIO` stages the bytes in a file from `tempfile.mkstemp()` (the system temp
    folder) and `shutil.move`s it; when that folder is on another filesystem than the checkpoints (a SageMaker
    checkpoint volume, a network disk) the move is a copy into the destination, i.e. an in-place write that a kill can
    cut short, and nothing is fsynced, so a power loss can leave an empty file. Here the temp file sits next to the
    target (same filesystem: `os.replace` is one atomic rename) and data and folder entry are fsynced.
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            return super().save_checkpoint(checkpoint, path, storage_options)  # remote (s3://...): Lightning's way
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        # The temp name does not end in .ckpt, so neither resume=auto nor ModelCheckpoint ever picks one up.
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        folder = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename itself survives a crash
        finally:
            os.close(folder)

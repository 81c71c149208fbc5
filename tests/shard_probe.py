"""ShardProbe: a test-only callback recording which rows each process trained and validated on (shard-rank<N>.json)."""

import json
from pathlib import Path

import pytorch_lightning as pl


class ShardProbe(pl.Callback):
    """Reads the indices from the samplers Lightning (train) and the DataModule (validation) actually used."""

    def __init__(self, out_dir: str):
        self.out_dir = Path(out_dir)
        self.record = {"train": [], "val": [], "train_rows_seen": 0, "val_rows_seen": 0}

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.record["train"] += [int(i) for i in trainer.train_dataloader.sampler]

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.record["val"] += [int(i) for i in trainer.val_dataloaders.sampler]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.record["train_rows_seen"] += len(batch["labels"])

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.record["val_rows_seen"] += len(batch["labels"])

    def on_fit_end(self, trainer, pl_module) -> None:
        record = {**self.record, "world_size": trainer.world_size}
        (self.out_dir / f"shard-rank{trainer.global_rank}.json").write_text(json.dumps(record))

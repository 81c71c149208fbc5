"""LightningDataModule for every task shape: load -> check -> encode (cached) -> dynamic-padding loaders."""

import logging

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader

from peftlab.config.dataset_schema import DatasetSettings
from peftlab.data.checks import check_split
from peftlab.data.collators import COLLATORS
from peftlab.data.encoders import ENCODERS
from peftlab.data.sampling import ShuffledBucketSampler
from peftlab.data.sources import load_split
from peftlab.data.tokenize import tokenize_split

log = logging.getLogger(__name__)

# Rows are sub-sampled with this fixed seed, so every run seed sees the same subset and hits the same cache.
SUBSET_SEED = 0


class TextDataModule(pl.LightningDataModule):
    """Rows of any task; `shape` (config/tasks.py) picks the encoder and the collator."""

    def __init__(self, settings: DatasetSettings, tokenizer, shape: str = "classify", seed: int = 42):
        super().__init__()
        self.settings = settings
        self.tokenizer = tokenizer
        self.shape = shape
        self.seed = seed
        self.encoder = ENCODERS[shape](tokenizer, settings)
        self.collator = COLLATORS[shape](tokenizer)
        self.train_dataset = None
        self.val_dataset = None
        self.cache_hits: dict[str, bool] = {}

    @property
    def num_labels(self) -> int:
        return len(self.settings.labels)

    def prepare_data(self) -> None:
        """Generate (demo), load, check and tokenise once; later calls and other ranks reuse the caches."""
        self._build()

    def setup(self, stage: str | None = None) -> None:
        self._build()

    def _build(self) -> None:
        if self.train_dataset is not None:
            return
        s = self.settings
        if s.generator is not None:
            instantiate(s.generator, out_dir=s.data_dir)
        self.train_dataset = self._split(s.train_split, s.max_train_rows)
        self.val_dataset = self._split(s.validation_split, s.max_eval_rows)

    def _split(self, split: str, max_rows: int | None):
        raw = load_split(self.settings, split)  # datasets' cache: HF_DATASETS_CACHE
        check_split(raw, self.settings)
        tokenized, self.cache_hits[split] = tokenize_split(raw.dataset, self.encoder)
        if max_rows is not None and max_rows < len(tokenized):
            tokenized = tokenized.shuffle(seed=SUBSET_SEED).select(range(max_rows))
        return tokenized

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        if not self.settings.group_by_length:
            return self._loader(self.train_dataset, self.settings.batch_size, shuffle=True, generator=generator)
        lengths = [len(ids) for ids in self.train_dataset["input_ids"]]  # multiple choice: choices per row
        if self.shape == "choose":
            lengths = [max(map(len, choices)) for choices in self.train_dataset["input_ids"]]
        sampler = ShuffledBucketSampler(lengths, self.settings.batch_size, self.settings.group_batches, generator)
        return self._loader(self.train_dataset, self.settings.batch_size, shuffle=False, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        # Several processes: each scores a disjoint slice, every row exactly once. Lightning's default
        # DistributedSampler pads the last slice with repeated rows, which would count them twice in the metrics.
        trainer = self.trainer
        sampler = None
        if trainer is not None and trainer.world_size > 1:
            sampler = UnrepeatedDistributedSampler(
                self.val_dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
            )
        return self._loader(self.val_dataset, self.settings.eval_batch_size, shuffle=False, sampler=sampler)

    def _loader(self, dataset, batch_size: int, shuffle: bool, generator=None, sampler=None) -> DataLoader:
        workers = self.settings.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=sampler,
            generator=generator,
            collate_fn=self.collator,
            num_workers=workers,
            persistent_workers=workers > 0,
        )

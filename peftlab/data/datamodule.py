"""LightningDataModule for every task shape: load -> check -> encode (cached) -> dynamic-padding loaders.

The test split (dataset.test_split) is built only in setup("test"): fitting and validating never read its rows.
"""

import logging

import pytorch_lightning as pl
import torch
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader

from peftlab.config.dataset_schema import DatasetSettings
from peftlab.config.tasks import LABELLED_SHAPES
from peftlab.data.by_shape import COLLATORS, ENCODERS
from peftlab.data.checks import check_split, checked_splits
from peftlab.data.heldout import held_out_source, load_test, without_holdout
from peftlab.data.packing import PackedCollator, PackedRows
from peftlab.data.resumable import EpochSeeded, ShardedEpochSeeded, epoch_seeded_random
from peftlab.data.sampling import ShuffledBucketSampler
from peftlab.data.sources import RawSplit
from peftlab.data.tokenize import tokenize_split
from peftlab.errors import DataError

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
        # What the training loader draws and how it collates: rows, or with dataset.packing bins of rows
        self.train_collator = PackedCollator(tokenizer) if settings.packing else self.collator
        self.train_items = None
        self.train_dataset = None
        self.val_dataset = None
        self.test_dataset = None  # built by setup("test") only
        self.test_source = held_out_source(settings)  # None: no test split; else its split or rows held out of train
        self.cache_hits: dict[str, bool] = {}
        self._train_sampler: EpochSeeded | ShardedEpochSeeded | None = None
        self._resume_state: dict | None = None
        # Rows per training forward when a memory budget splits each batch (trainer/memory_budget.py): batches are
        # still drawn dataset.batch_size rows at a time and cut into micro-batches, so the rows of a step are the same.
        self.micro_batch_size: int | None = None

    @property
    def num_labels(self) -> int:
        return len(self.settings.labels)

    def prepare_data(self) -> None:
        """Generate (demo), load, check and tokenise once; later calls and other ranks reuse the caches."""
        self._build()

    def setup(self, stage: str | None = None) -> None:
        self._build()
        if stage == "test":
            self._build_test()

    def _build(self) -> None:
        if self.train_dataset is not None:
            return
        s = self.settings
        train, validation = checked_splits(s)
        self.train_dataset = self._encode("train", without_holdout(train, self.test_source), s.max_train_rows)
        self.train_items = self.train_dataset
        if s.packing:
            self.train_items = PackedRows(self.train_dataset, s.packing_length or s.max_length)
            log.info("packed %d rows into %d bins (%.1f %% of their tokens are rows)", len(self.train_dataset),
                     len(self.train_items), 100 * self.train_items.fill())  # fmt: skip
        self.val_dataset = self._encode("validation", validation, s.max_eval_rows)

    def _build_test(self) -> None:
        if self.test_dataset is not None:
            return
        if self.test_source is None:
            raise DataError(
                f"dataset.test_split=null: dataset {self.settings.name} has no test split; set dataset.test_split=test "
                "(a test file in data_dir, else rows held out of train)"
            )
        raw = load_test(self.settings, self.test_source)
        check_split(raw, self.settings)
        self.test_dataset = self._encode("test", raw, None)

    def _encode(self, role: str, raw: RawSplit, max_rows: int | None):
        tokenized, self.cache_hits[role] = tokenize_split(raw.dataset, self.encoder)
        if max_rows is not None and max_rows < len(tokenized):
            tokenized = tokenized.shuffle(seed=SUBSET_SEED).select(range(max_rows))
        if role != "train" and self.shape in LABELLED_SHAPES:
            # Scored by accumulating metrics and a row-weighted loss, so the order is free: longest first, so each
            # batch pads to rows of about its own length (AG News, 400 rows in batches of 128: 28,032 tokens
            # instead of 48,528) and the batch that sets the peak comes first. Generation keeps the file order:
            # max_eval_generate_rows takes the first rows.
            lengths = row_lengths(tokenized, self.shape)
            tokenized = tokenized.select(sorted(range(len(lengths)), key=lengths.__getitem__, reverse=True))
        log.info("%s rows: %d from %s", role, len(tokenized), raw.origin)
        return tokenized

    def train_dataloader(self) -> DataLoader:
        # Order from (seed, epoch), position saved in checkpoints (state_dict): a resumed job sees the same batches
        if not self.settings.group_by_length or self.settings.packing:  # bins are all about as long
            sampler = epoch_seeded_random(self.train_items, self.seed)
        else:
            generator = torch.Generator()
            bucketed = ShuffledBucketSampler(
                self.train_lengths(), self.settings.batch_size, self.settings.group_batches, generator
            )
            sampler = EpochSeeded(bucketed, generator, self.seed)
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:  # each process its slice (Lightning leaves it as is)
            sampler = ShardedEpochSeeded(
                sampler, trainer.world_size, trainer.global_rank, batch_size=self.settings.batch_size
            )
        self._train_sampler = sampler
        self._apply_resume()
        return self._loader(self.train_items, self.train_batch_size, False, sampler, self.train_collator)

    def train_lengths(self) -> list[int]:
        """Tokens of each training item: row (multiple choice: its longest choice), or bin when packed."""
        if self.settings.packing:
            return [sum(self.train_items.lengths[r] for r in rows) for rows in self.train_items.bins]
        return row_lengths(self.train_dataset, self.shape)

    @property
    def train_batch_size(self) -> int:
        """Rows per training forward: dataset.batch_size, or the memory budget's micro-batch (which divides it)."""
        return self.micro_batch_size or self.settings.batch_size

    def state_dict(self) -> dict:
        """Where training stands in the epoch; Lightning stores it in every checkpoint.

        Why here and not on the DataLoader (Lightning's `_Stateful` loaders): Lightning 2.6 builds the train loader
        early when `configure_optimizers` asks for `estimated_stepping_batches`, before the checkpoint's loop state
        is restored, and then never hands that loader its saved state; the datamodule's state is always restored.
        `batches` is the fit loop's own count of batches taken this epoch (all trained when a checkpoint is written).
        """
        if self._train_sampler is None or self.trainer is None:
            return {}
        taken = self.trainer.fit_loop.epoch_loop.batch_progress.current.ready
        return {"epoch": self._train_sampler.epoch, "batches": taken}

    def load_state_dict(self, state: dict) -> None:
        self._resume_state = state or None
        self._apply_resume()

    def _apply_resume(self) -> None:
        """Skip the batches an interrupted attempt already trained on (once, in the saved epoch)."""
        state, sampler = self._resume_state, self._train_sampler
        if not state or sampler is None:
            return
        self._resume_state = None
        # set the epoch now: Lightning creates the iterator before it calls set_epoch
        sampler.set_epoch(state["epoch"])
        sampler.resume_at(state["epoch"], state["batches"] * self.train_batch_size)

    def val_dataloader(self) -> DataLoader:
        # Several processes: each scores a disjoint slice, every row exactly once. Lightning's default
        # DistributedSampler pads the last slice with repeated rows, which would count them twice in the metrics.
        trainer = self.trainer
        sampler, batch_size = None, self.settings.eval_batch_size
        if trainer is not None and trainer.world_size > 1:
            sampler = UnrepeatedDistributedSampler(
                self.val_dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
            )
            batch_size = even_batch_size(len(self.val_dataset), trainer.world_size, batch_size)
        return self._loader(self.val_dataset, batch_size, shuffle=False, sampler=sampler)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, self.settings.eval_batch_size, shuffle=False)

    def _loader(self, dataset, batch_size: int, shuffle: bool, sampler=None, collate=None) -> DataLoader:
        workers = self.settings.num_workers
        # Its own generator (workers' base seed): iter() of a loader without one draws from torch's global generator,
        # which would shift the dropout masks of a resumed run (RngState restores that generator).
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=sampler,
            collate_fn=collate or self.collator,
            num_workers=workers,
            persistent_workers=workers > 0,
            generator=torch.Generator().manual_seed(self.seed),
        )


def even_batch_size(rows: int, ranks: int, batch_size: int) -> int:
    """A validation batch size that gives every rank the same number of batches, each row still scored once.

    Why: with rows dealt unevenly (r has q or q + 1 of them), a rank with one batch more runs one forward more, and a
    sharded model's forward is a collective (FSDP gathers its weights): the other ranks never join it and the job
    hangs. Counts ceil(q / b) and ceil((q + 1) / b) differ only when b divides q, so the largest b <= batch_size that
    does not (else the smallest above it) evens them out; rows split evenly need no change.
    """
    fewest = rows // ranks
    if rows % ranks == 0:
        return batch_size
    if fewest == 0:
        raise DataError(
            f"validation: {rows} rows for {ranks} processes; each process needs at least one "
            "(raise dataset.max_eval_rows or use fewer devices)"
        )
    below = [b for b in range(batch_size, 1, -1) if fewest % b]
    return below[0] if below else next(b for b in range(batch_size + 1, fewest + 2) if fewest % b)


def row_lengths(rows, shape: str) -> list[int]:
    """Tokens of each encoded row (multiple choice: of its longest choice)."""
    if shape == "choose":
        return [max(map(len, choices)) for choices in rows["input_ids"]]
    return [len(ids) for ids in rows["input_ids"]]

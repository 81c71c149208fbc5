"""The held-out test split: a test file or hub split, else a seeded slice of train that training never sees.

Which one a dataset has is decided from the config and the folder's file names alone (held_out_source), so a training
run can drop the held-out rows from train without reading the test rows, and the test stage finds the same rows.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from peftlab.config.dataset_schema import DatasetSettings
from peftlab.data.sources import BUILDERS, RawSplit, load_split
from peftlab.errors import DataError

# One slice for every run seed and method: what is held out must not depend on the run.
HOLDOUT_SEED = 0
# The dataset keys that say which rows are held out: a run's evaluation and a comparison's jobs carry them unchanged.
HELD_OUT_KEYS = ("test_split", "test_holdout")


@dataclass(frozen=True)
class HeldOutSource:
    """Where a dataset's test rows come from: its own split (`split`), or train rows held out (`holdout`)."""

    split: str | None  # the split to load (local file name or hub split); None when held out of train
    holdout: float | None  # dataset.test_holdout when held out, else None

    def describe(self, rows: int | None = None) -> str:
        """One line for metrics and reports: which rows the test scores are on (`rows`: how many)."""
        count = f"{rows:,} rows" if rows is not None else None
        if self.split is not None:
            return f"the dataset's test split '{self.split}'" + (f" ({count})" if count else "")
        what = f"{self.holdout * 100:g} % of train" if self.holdout < 1 else f"{int(self.holdout):,} train rows"
        detail = ", ".join(filter(None, [count, f"seed {HOLDOUT_SEED}"]))
        return f"{what} held out ({detail}), removed from training: the dataset has no test split"


def held_out_source(settings: DatasetSettings) -> HeldOutSource | None:
    """None: the run has no test split (dataset.test_split=null). Decided without reading any rows."""
    name = settings.test_split
    if name is None:
        return None
    if settings.data_dir is not None:
        folder = Path(settings.data_dir).expanduser()
        has_file = any((folder / f"{name}{ending}").is_file() for ending in BUILDERS)
        return HeldOutSource(name, None) if has_file else HeldOutSource(None, settings.test_holdout)
    hub_names = settings.hub_split_names
    if hub_names.get(name, name) in (hub_names.get(s, s) for s in (settings.train_split, settings.validation_split)):
        return HeldOutSource(None, settings.test_holdout)  # ag_news: the hub's test split is our validation
    return HeldOutSource(name, None)


def holdout_count(train_rows: int, holdout: float) -> int:
    count = round(train_rows * holdout) if holdout < 1 else int(holdout)
    if not 1 <= count < train_rows:
        raise DataError(
            f"dataset.test_holdout={holdout}: holds out {count} of {train_rows} train rows; "
            "at least 1 must be held out and 1 left to train on"
        )
    return count


def holdout_rows(train_rows: int, holdout: float) -> np.ndarray:
    """Indices (sorted) of the train rows held out for testing: the first of a permutation seeded HOLDOUT_SEED."""
    order = np.random.default_rng(HOLDOUT_SEED).permutation(train_rows)
    return np.sort(order[: holdout_count(train_rows, holdout)])


def without_holdout(raw: RawSplit, source: HeldOutSource | None) -> RawSplit:
    """The train split less the held-out rows (unchanged when the test rows come from a split of their own)."""
    if source is None or source.split is not None:
        return raw
    keep = np.setdiff1d(np.arange(len(raw.dataset)), holdout_rows(len(raw.dataset), source.holdout))
    return RawSplit(raw.dataset.select(keep), raw.origin, None)  # row numbers no longer equal file lines


def load_test(settings: DatasetSettings, source: HeldOutSource) -> RawSplit:
    """The test rows: the split's own file / hub split, or the held-out rows of train."""
    if source.split is not None:
        return load_split(settings, source.split)
    train = load_split(settings, settings.train_split)
    rows = holdout_rows(len(train.dataset), source.holdout)
    return RawSplit(train.dataset.select(rows), f"{train.origin} (held-out rows)", None)

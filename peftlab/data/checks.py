"""Row-level checks on a raw split: columns present, split not empty, every label in the configured set."""

import datasets
from hydra.utils import instantiate

from peftlab.config.dataset_schema import TEXT_TASKS, DatasetSettings
from peftlab.data.formatting import choices_of, required_columns
from peftlab.data.labels import label_in_set
from peftlab.data.sources import RawSplit, load_split
from peftlab.errors import DataError


def checked_splits(settings: DatasetSettings) -> tuple[RawSplit, RawSplit]:
    """The train and validation splits (the demo's files generated first), each checked whole so a bad row is named
    by its line.

    The training command calls it before torch, transformers and Lightning are imported (run.train): a bad file is
    one line about 2 s after the command starts, not 8-10 s. The DataModule calls it again for the rows it encodes;
    the second call gets the same loaded files (sources.load_split keeps one load per file version).
    """
    if settings.generator is not None:
        instantiate(settings.generator, out_dir=settings.data_dir)
    return _checked(settings, settings.train_split), _checked(settings, settings.validation_split)


def _checked(settings: DatasetSettings, split: str) -> RawSplit:
    raw = load_split(settings, split)  # datasets' cache: HF_DATASETS_CACHE
    check_split(raw, settings)
    return raw


def _where(raw: RawSplit, row: int) -> str:
    line = f", line {raw.first_row_line + row}" if raw.first_row_line is not None else ""
    return f"{raw.origin}: row {row}{line}"


def check_split(raw: RawSplit, settings: DatasetSettings) -> None:
    """Raise DataError naming the file and the first bad row; reads only the needed columns."""
    ds = raw.dataset
    needed = required_columns(settings)
    for column in needed:
        if column not in ds.column_names:
            raise DataError(
                f"{raw.origin}: missing column '{column}' (columns are: {', '.join(ds.column_names)}); "
                f"set the dataset's column keys (dataset.text_column, ...) to match the file"
            )
    if len(ds) == 0:
        raise DataError(f"{raw.origin}: the split is empty")
    text_columns = needed if settings.task in TEXT_TASKS else needed[:-1]
    for column in text_columns:
        if column in (settings.choices_column, settings.label_column) or _all_text(ds, column):
            continue
        for row, text in enumerate(ds[column]):
            if not isinstance(text, str):
                raise DataError(f"{_where(raw, row)}: '{column}' is {text!r}, expected text")
    if settings.choices_column in needed:
        _check_choices(raw, settings)
    if settings.label_column in needed:
        _check_labels(raw, settings)


def _check_choices(raw: RawSplit, settings: DatasetSettings) -> None:
    want = len(settings.labels)
    for row, choices in enumerate(raw.dataset[settings.choices_column]):
        try:
            got = choices_of({settings.choices_column: choices}, settings)
        except (KeyError, TypeError) as err:
            raise DataError(f"{_where(raw, row)}: '{settings.choices_column}' has no choice list ({err})") from err
        if len(got) != want:
            raise DataError(
                f"{_where(raw, row)}: {len(got)} choices, expected {want} (one per label {list(settings.labels)})"
            )


def _all_text(ds: datasets.Dataset, column: str) -> bool:
    """Arrow's schema vouches for every row (a string column without nulls; with a row selection, of the whole table
    under it): no pass over the rows in Python, which took 1.9 s of every SST-2 run's start (67k rows)."""
    feature = ds.features.get(column)
    is_string = isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")
    return is_string and ds.data.column(column).null_count == 0


def _check_labels(raw: RawSplit, settings: DatasetSettings) -> None:
    names = list(settings.labels)
    plain = isinstance(raw.dataset.features.get(settings.label_column), datasets.Value)  # Arrow's unique needs it
    if plain and all(label_in_set(value, names) for value in raw.dataset.unique(settings.label_column)):
        return  # the distinct values (Arrow) are all fine; else the loop below names the first bad row
    for row, value in enumerate(raw.dataset[settings.label_column]):
        if not label_in_set(value, names):
            raise DataError(
                f"{_where(raw, row)}: label {value!r} is not in the label set "
                f"{names} (ids 0..{len(names) - 1} or these names)"
            )

"""Where a dataset's rows come from: local files in dataset.data_dir (JSONL/JSON/CSV/Parquet) or the hub."""

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import datasets

from peftlab.config.dataset_schema import DatasetSettings
from peftlab.errors import DataError

# File ending -> datasets' packaged builder; tried in this order for <split>.<ending>.
BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


@dataclass
class RawSplit:
    """One split as loaded, with a human-readable origin for error messages."""

    dataset: datasets.Dataset
    origin: str  # a file path, or "hub <id>/<config>:<split>"
    first_row_line: int | None  # line number of row 0 in the file (JSONL 1, CSV 2); None for hub/parquet


def split_file(data_dir: str, split: str) -> Path:
    folder = Path(data_dir).expanduser()
    for ending in BUILDERS:
        path = folder / f"{split}{ending}"
        if path.is_file():
            return path
    looked = ", ".join(f"{split}{e}" for e in BUILDERS)
    raise DataError(f"dataset.data_dir={data_dir}: no '{split}' split file (looked for {looked})")


def load_split(settings: DatasetSettings, split: str, cache_dir: str | None = None) -> RawSplit:
    """Load one split; local files are converted to Arrow once and cached by `datasets`."""
    if settings.data_dir is not None:
        path = split_file(settings.data_dir, split)
        builder = BUILDERS[path.suffix]
        if _is_blank(path):
            raise DataError(f"{path}: the split is empty")
        stat = path.stat()
        try:
            ds = _load_file(builder, str(path), split, cache_dir, stat.st_mtime_ns, stat.st_size)
        except Exception as err:  # datasets wraps parser errors in several types; all mean "unreadable file"
            where = _bad_json_line(path) if path.suffix == ".jsonl" else None
            raise DataError(f"{path}: {where or f'cannot be read as {builder}: {_root_cause(err)}'}") from err
        first_line = {"json": 1, "csv": 2}.get(builder) if path.suffix != ".json" else None
        return RawSplit(ds, str(path), first_line)
    split = settings.hub_split_names.get(split, split)
    try:
        ds = datasets.load_dataset(settings.hub_id, settings.hub_config, split=split, cache_dir=cache_dir)
    except Exception as err:
        raise DataError(
            f"dataset {settings.name}: could not load {settings.hub_id}/{settings.hub_config} split '{split}' "
            f"from the hub ({_root_cause(err)}); offline, set dataset.data_dir=<folder with {split}.jsonl>"
        ) from err
    return RawSplit(ds, f"hub {settings.hub_id}/{settings.hub_config}:{split}", None)


@functools.lru_cache(maxsize=16)
def _load_file(builder: str, path: str, split: str, cache_dir: str | None, mtime_ns: int, size: int):
    """One load per version of a file and process: a run's data check and its DataModule, and every job of a `-m`
    sweep, read the same files, and `datasets` spends ~20 ms a call even on its Arrow cache (builder, file
    fingerprints). The file's mtime and size are in the key, so a file rewritten between two jobs is read again (as
    `datasets`' own cache tells versions apart by path and mtime); the Dataset is shared read-only (its transforms
    return new ones)."""
    return datasets.load_dataset(builder, data_files={split: path}, split=split, cache_dir=cache_dir)


def _is_blank(path: Path) -> bool:
    """True for a file with nothing but white space (datasets would fail on it with a bare StopIteration)."""
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            if chunk.strip():
                return False
    return True


def _bad_json_line(path: Path) -> str | None:
    """'line N: invalid JSON (...)' for the first unparsable line of a JSONL file.

    By hand: pyarrow's message gives a row number inside the block it was parsing, not the file's line.
    """
    with path.open(encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                json.loads(line)
            except json.JSONDecodeError as err:
                return f"line {number}: invalid JSON ({err.msg} at column {err.colno})"
    return None


def _root_cause(err: BaseException) -> str:
    while err.__cause__ is not None:
        err = err.__cause__
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__

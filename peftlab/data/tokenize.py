"""Tokenisation through `datasets.map`, cached under a fingerprint of (rows, tokenizer, columns, max length)."""

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import datasets
from datasets.fingerprint import Hasher

from peftlab.config.schema import DatasetSettings
from peftlab.data.checks import label_id

log = logging.getLogger(__name__)


@dataclass
class TokenizeRows:
    """Batched map function: text (and pair) -> input ids; label names/ids -> `labels` ids."""

    tokenizer: object
    text_column: str
    text_pair_column: str | None
    label_column: str
    label_names: list[str]
    max_length: int

    def __call__(self, batch: dict) -> dict:
        pairs = batch[self.text_pair_column] if self.text_pair_column else None
        encoded = self.tokenizer(batch[self.text_column], pairs, truncation=True, max_length=self.max_length)
        encoded["labels"] = [label_id(v, self.label_names) for v in batch[self.label_column]]
        return encoded


def tokenizer_fingerprint(tokenizer) -> str:
    """Stable across processes (unlike hashing the object): class, vocabulary and normalisation rules."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        state = repr(sorted(tokenizer.get_vocab().items()))
    else:
        # Calling the tokenizer records its last truncation/padding in this state: leave those out, or the
        # fingerprint would depend on whether an earlier split was tokenised or read from the cache.
        state = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
    return Hasher.hash([type(tokenizer).__name__, state, tokenizer.model_max_length])


def tokenize_split(ds: datasets.Dataset, tokenizer, settings: DatasetSettings) -> tuple[datasets.Dataset, bool]:
    """Return (tokenised split, whether it came from the cache). Cache file sits next to the split's Arrow file."""
    fn = TokenizeRows(
        tokenizer,
        settings.text_column,
        settings.text_pair_column,
        settings.label_column,
        list(settings.labels),
        settings.max_length,
    )
    fingerprint = Hasher.hash(
        [
            ds._fingerprint,
            tokenizer_fingerprint(tokenizer),
            settings.text_column,
            settings.text_pair_column,
            settings.label_column,
            list(settings.labels),
            settings.max_length,
            "tokenize-v1",
        ]
    )
    cache_file = None
    if ds.cache_files:
        cache_file = str(Path(ds.cache_files[0]["filename"]).parent / f"peftlab-tokenized-{fingerprint}.arrow")
    hit = cache_file is not None and Path(cache_file).exists()
    tokenized = ds.map(
        fn,
        batched=True,
        remove_columns=ds.column_names,
        new_fingerprint=fingerprint,
        cache_file_name=cache_file,
        load_from_cache_file=True,
        desc=f"tokenising {settings.name}",
    )
    log.info("tokenised %s (%d rows): %s", settings.name, len(tokenized), "cache hit" if hit else "computed")
    return tokenized, hit

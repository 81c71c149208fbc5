"""Tokenisation through `datasets.map`, cached under a fingerprint of (rows, tokenizer, encoder and its settings)."""

import logging
from pathlib import Path

import datasets
from datasets.fingerprint import Hasher

from peftlab.data.encoders import Encoder

log = logging.getLogger(__name__)


def tokenize_split(ds: datasets.Dataset, encoder: Encoder) -> tuple[datasets.Dataset, bool]:
    """Return (tokenised split, whether it came from the cache). Cache file sits next to the split's Arrow file."""
    settings = encoder.settings
    fingerprint = Hasher.hash([ds._fingerprint, encoder.tokenizer_hash, *encoder.fingerprint_parts(), "tokenize-v3"])
    cache_file = None
    if ds.cache_files:
        cache_file = str(Path(ds.cache_files[0]["filename"]).parent / f"peftlab-tokenized-{fingerprint}.arrow")
    hit = cache_file is not None and Path(cache_file).exists()
    tokenized = ds.map(
        encoder,
        batched=True,
        remove_columns=ds.column_names,
        new_fingerprint=fingerprint,
        cache_file_name=cache_file,
        load_from_cache_file=True,
        desc=f"tokenising {settings.name}",
    )
    log.info("tokenised %s (%d rows): %s", settings.name, len(tokenized), "cache hit" if hit else "computed")
    return tokenized, hit

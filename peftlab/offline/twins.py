"""Offline twins: a family's real model classes built `from_config` with small dimensions and random weights.

The twin is written once (seeded) to a folder as an ordinary checkpoint, tokenizer included, so everything
downstream — tokenisation, 4-bit loading, adapters, save/reload — goes through the same `from_pretrained` path as a
hub model. The tokenizer comes first (offline/twin_tokenizers.py): the model's vocabulary size and its special token
ids are read from it, as a hub config's are set from its tokenizer.
"""

from pathlib import Path

import torch
import transformers

from peftlab.offline.cached_folder import write_once

TWIN_MARKER = "peftlab_twin.json"


def materialise_twin(
    folder: str,
    model_type: str,
    config_overrides: dict,
    task_auto_class: str,
    seed: int = 0,
    tokenizer: dict | None = None,
) -> Path:
    """Write (or reuse) a random-weight checkpoint of `model_type` in `folder`; returns the folder.

    `tokenizer` is a `_target_` spec (conf/model/*_tiny.yaml `twin_tokenizer`) called with the folder to write into.
    """
    spec = {
        "model_type": model_type,
        "config": config_overrides,
        "tokenizer": tokenizer,
        "auto_class": task_auto_class,
        "seed": seed,
        "transformers": transformers.__version__,
    }

    def build(tmp: Path) -> None:
        overrides = dict(config_overrides)
        if tokenizer is not None:
            from hydra.utils import instantiate

            built = instantiate(tokenizer, folder=str(tmp))
            built.save_pretrained(tmp)
            overrides = {**_vocabulary_of(built), **overrides}
        config = transformers.AutoConfig.for_model(model_type, **overrides)
        # Same weights for every run and every test (twins are reproducible), drawn from a forked generator: seeding
        # the global one here would give the run that happens to build the twin other LoRA and head inits than a
        # run with the same seed that finds it built (the cause of a flaky DDP kill -9 + resume test).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            getattr(transformers, task_auto_class).from_config(config).save_pretrained(tmp)

    return write_once(folder, TWIN_MARKER, spec, build, foreign="that is not a tiny twin")


def _vocabulary_of(tokenizer) -> dict:
    """Config values a model takes from its tokenizer: vocabulary size and the special token ids it has."""
    ids = {f"{name}_token_id": getattr(tokenizer, f"{name}_token_id") for name in ("pad", "bos", "eos")}
    return {"vocab_size": len(tokenizer), **{key: value for key, value in ids.items() if value is not None}}


def write_twin(model) -> Path:
    """model.init of a twin (conf/model/*_tiny.yaml): its random-weight folder at model.name_or_path, written once
    from model_type, config_overrides and twin_tokenizer (ModelSettings)."""
    tokenizer = dict(model.twin_tokenizer) if model.twin_tokenizer else None
    return materialise_twin(
        model.name_or_path, model.model_type, dict(model.config_overrides), "AutoModel", tokenizer=tokenizer
    )

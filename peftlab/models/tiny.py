"""Offline twins: a family's real model classes built `from_config` with small dimensions and random weights.

The twin is written once (seeded) to a folder as an ordinary checkpoint, tokenizer included, so everything
downstream — tokenisation, 4-bit loading, adapters, save/reload — goes through the same `from_pretrained` path as a
hub model. The tokenizer comes first (models/twin_tokenizers.py): the model's vocabulary size and its special token
ids are read from it, as a hub config's are set from its tokenizer.
"""

import json
import os
import shutil
from pathlib import Path

import torch
import transformers

from peftlab.errors import ConfigError

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
    out = Path(folder).expanduser()
    spec = {
        "model_type": model_type,
        "config": config_overrides,
        "tokenizer": tokenizer,
        "auto_class": task_auto_class,
        "seed": seed,
        "transformers": transformers.__version__,
    }
    marker = out / TWIN_MARKER
    if marker.is_file() and json.loads(marker.read_text()) == spec and (out / "config.json").is_file():
        return out
    if out.is_dir() and any(out.iterdir()) and not marker.is_file():  # e.g. an exported model: never delete it
        raise ConfigError(
            f"model.name_or_path={folder}: holds a model that is not a tiny twin; not overwriting it "
            "(to load its weights set model.init=pretrained)"
        )
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    overrides = dict(config_overrides)
    if tokenizer is not None:
        from hydra.utils import instantiate

        built = instantiate(tokenizer, folder=str(tmp))
        built.save_pretrained(tmp)
        overrides = {**_vocabulary_of(built), **overrides}
    config = transformers.AutoConfig.for_model(model_type, **overrides)
    torch.manual_seed(seed)  # same weights for every run and every test: twins are reproducible
    model = getattr(transformers, task_auto_class).from_config(config)
    model.save_pretrained(tmp)
    (tmp / TWIN_MARKER).write_text(json.dumps(spec, indent=2))
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out, ignore_errors=True)  # a stale twin (other spec) is rebuilt
    tmp.replace(out)  # atomic: a parallel job sees either no twin or a whole one
    return out


def _vocabulary_of(tokenizer) -> dict:
    """Config values a model takes from its tokenizer: vocabulary size and the special token ids it has."""
    ids = {f"{name}_token_id": getattr(tokenizer, f"{name}_token_id") for name in ("pad", "bos", "eos")}
    return {"vocab_size": len(tokenizer), **{key: value for key, value in ids.items() if value is not None}}

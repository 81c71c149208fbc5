"""Load the tokenizer and the base model with the head the task needs (e.g. sequence classification)."""

import torch
import transformers

from peftlab.config.schema import ModelSettings
from peftlab.errors import ConfigError

# dataset.task -> transformers auto class that adds the right head.
TASK_AUTO_CLASSES = {"classification": "AutoModelForSequenceClassification"}


def load_tokenizer(settings: ModelSettings):
    source = settings.tokenizer or settings.name_or_path
    try:
        return transformers.AutoTokenizer.from_pretrained(source)
    except OSError as err:
        raise ConfigError(f"model.tokenizer: cannot load a tokenizer from {source!r} ({err})") from err


def load_base_model(settings: ModelSettings, task: str, labels: list[str]) -> torch.nn.Module:
    """Pretrained weights from a hub id or folder; the task head is freshly initialised for `labels`."""
    auto_class = getattr(transformers, TASK_AUTO_CLASSES[task])
    try:
        model = auto_class.from_pretrained(
            settings.name_or_path,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)},
            dtype=getattr(torch, settings.dtype),
        )
    except OSError as err:
        raise ConfigError(f"model.name_or_path: cannot load {settings.name_or_path!r} ({err})") from err
    # from_pretrained returns eval mode; Lightning keeps sub-module modes as found, so switch dropout on.
    return model.train()

"""Load the tokenizer and the base model with the head the task needs (e.g. sequence classification)."""

import torch
import transformers

from peftlab.config.schema import ModelSettings
from peftlab.config.tasks import LABELLED_SHAPES
from peftlab.errors import ConfigError
from peftlab.models.tiny import materialise_twin

# Task shape (config/tasks.py) -> transformers auto class that adds the right head.
AUTO_CLASSES = {
    "classify": "AutoModelForSequenceClassification",
    "choose": "AutoModelForMultipleChoice",
    "seq2seq": "AutoModelForSeq2SeqLM",
    "causal": "AutoModelForCausalLM",
}


# Modules holding learned absolute positions (BERT/MiniLM: position_embeddings, GPT-2: wpe): their rows bound the
# input length. Relative-position models (T5, BLOOM, DeBERTa-v3) have none, and no such bound.
POSITION_TABLES = ("position_embeddings", "wpe")


def check_max_length(model: torch.nn.Module, max_length: int, model_name: str) -> None:
    """Longer inputs would index past the position table (an IndexError deep in the first forward pass)."""
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Embedding) and name.rsplit(".", 1)[-1] in POSITION_TABLES:
            if max_length > module.num_embeddings:
                raise ConfigError(
                    f"dataset.max_length={max_length}: longer than model={model_name} takes "
                    f"({module.num_embeddings} positions); set dataset.max_length<={module.num_embeddings}"
                )
            return


def load_tokenizer(settings: ModelSettings):
    source = settings.tokenizer or settings.name_or_path
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(source)
    except OSError as err:
        raise ConfigError(f"model.tokenizer: cannot load a tokenizer from {source!r} ({err})") from err
    if tokenizer.pad_token is None:
        if settings.pad_token != "eos":
            raise ConfigError(f"model.pad_token: tokenizer of {source!r} has no pad token; set model.pad_token=eos")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def model_source(settings: ModelSettings) -> str:
    """The folder or hub id to load; for init=random, the offline twin (its bare backbone) is written there first."""
    if settings.init == "random":
        materialise_twin(settings.name_or_path, settings.model_type, dict(settings.config_overrides), "AutoModel")
    return settings.name_or_path


def load_base_model(
    settings: ModelSettings, shape: str, labels: list[str], pad_token_id: int | None = None, **load_kwargs
) -> torch.nn.Module:
    """Pretrained (or twin) weights with the head `shape` needs; a classification head is fresh, sized to `labels`.

    load_kwargs go to from_pretrained (e.g. quantization_config for QLoRA).
    """
    auto_class = getattr(transformers, AUTO_CLASSES[shape])
    if shape in LABELLED_SHAPES:
        load_kwargs = {
            "num_labels": len(labels),
            "id2label": dict(enumerate(labels)),
            "label2id": {name: i for i, name in enumerate(labels)},
            **load_kwargs,
        }
    source = model_source(settings)
    try:
        model = auto_class.from_pretrained(source, dtype=getattr(torch, settings.dtype), **load_kwargs)
    except OSError as err:
        raise ConfigError(f"model.name_or_path: cannot load {settings.name_or_path!r} ({err})") from err
    if pad_token_id is not None:  # decoder heads find each row's last token through pad_token_id
        model.config.pad_token_id = pad_token_id
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.pad_token_id = pad_token_id
    # from_pretrained returns eval mode; Lightning keeps sub-module modes as found, so switch dropout on.
    return model.train()

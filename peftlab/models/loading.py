"""Load the tokenizer and the base model with the head the task needs (e.g. sequence classification)."""

import re
from pathlib import Path

import torch
import transformers

from peftlab.compat import expose_past_key_values, keep_exact_4bit_layout
from peftlab.config.schema import ModelSettings
from peftlab.config.tasks import CAUSAL_SHAPES, LABELLED_SHAPES
from peftlab.errors import ConfigError

# Task shape (config/tasks.py) -> transformers auto class that adds the right head.
AUTO_CLASSES = {
    "classify": "AutoModelForSequenceClassification",
    "choose": "AutoModelForMultipleChoice",
    "seq2seq": "AutoModelForSeq2SeqLM",
    **dict.fromkeys(CAUSAL_SHAPES, "AutoModelForCausalLM"),
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


def tokenizer_error(settings: ModelSettings, source: str, err: BaseException) -> ConfigError:
    """Any failure to build a tokenizer, as one line naming the model, the source and what to install or set."""
    chain, cause = [], err
    while cause is not None and len(chain) < 8:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    text = " ".join(f"{type(e).__name__}: {e}" for e in chain)
    missing = next((e.name for e in chain if isinstance(e, ModuleNotFoundError) and e.name), None)
    if re.search("sentencepiece|tiktoken", text, re.I):
        # transformers reads a sentencepiece .model through the sentencepiece package; when that fails (missing, or
        # built for a newer protobuf) it only logs why and falls back to tiktoken, whose absence is then the error.
        reason = _sentencepiece_problem() or f"needs the {missing or 'tiktoken'!r} package (pip install tiktoken)"
    elif missing:
        reason = f"needs the {missing!r} package (pip install {missing})"
    else:
        reason = _first_line(err)
        if not Path(source).expanduser().exists():
            reason += " (no network? offline, use model=minilm or a *_tiny twin)"
    return ConfigError(f"model={settings.name}: cannot load the tokenizer of {source!r}: {reason}")


def _sentencepiece_problem() -> str | None:
    try:
        from sentencepiece import sentencepiece_model_pb2  # noqa: F401  (what transformers reads .model files with)
    except ImportError:
        return "needs the 'sentencepiece' package (pip install sentencepiece)"
    except Exception as err:  # protobuf's "Runtime version cannot be older than the linked gencode version"
        return f"the sentencepiece package cannot load here ({_first_line(err)})"
    return None


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def load_tokenizer(settings: ModelSettings):
    source = settings.tokenizer or model_source(settings)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(source)
    except Exception as err:  # OSError (not found), ImportError/ValueError (backend missing), protobuf clashes ...
        raise tokenizer_error(settings, source, err) from err
    if tokenizer.pad_token is None:
        if settings.pad_token != "eos":
            raise ConfigError(f"model.pad_token: tokenizer of {source!r} has no pad token; set model.pad_token=eos")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def model_source(settings: ModelSettings) -> str:
    """The folder or hub id to load; model.init (an offline twin, a GGUF conversion: peftlab/offline/) writes the
    folder there first, once."""
    if settings.init is not None and not _is_hub_id(settings.name_or_path):
        from hydra.utils import instantiate

        instantiate(settings.init, settings)
    return settings.name_or_path


def _is_hub_id(name: str) -> bool:
    """`org/name` not found on disk: the hub's weights are asked for (a cache folder is always an absolute path)."""
    path = Path(name).expanduser()
    return not path.is_absolute() and not path.exists() and name.count("/") == 1


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
    expose_past_key_values(keep_exact_4bit_layout(model))  # upstream workarounds, see compat.py
    # from_pretrained returns eval mode; Lightning keeps sub-module modes as found, so switch dropout on.
    return model.train()


def use_activation_checkpointing(model: torch.nn.Module, every: int, model_name: str) -> None:
    """model.activation_checkpointing=n: every n-th decoder layer recomputed in the backward (transformers' own
    checkpointing, non-reentrant: torch keeps the dropout masks' RNG state, so the recompute draws the same masks)."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise ConfigError(f"model.activation_checkpointing={every}: model={model_name} does not support it; use 0")
    model.activation_checkpointing_enable(every_n_layers=every)

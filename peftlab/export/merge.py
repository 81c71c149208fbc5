"""Put a run's adapter back on a full-precision base and fold it into the weights: a plain transformers model.

The base is loaded as evaluate.py and serving load it (load_base_model + the run's saved adapter via load_trained).
A QLoRA base is loaded in 4-bit as it trained and de-quantised to float32 layers (transformers' `dequantize`) before
the adapter is merged: those are the very weights the adapter learned against, so the merged model reproduces the
4-bit model. Never merged into 4-bit weights (rounding the sum back to NF4 would lose most of the LoRA update), and
not into the base's original weights either (a slightly different model: measured 0.005-0.015 lower accuracy).
Before saving, the merged model's logits are compared with those of base + adapter on a few probe sentences.
"""

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
import transformers
from peft.utils import ModulesToSaveWrapper

from peftlab.config import RunSettings
from peftlab.config.tasks import CAUSAL_SHAPES, LABELLED_SHAPES
from peftlab.models.loading import AUTO_CLASSES, load_base_model, load_tokenizer
from peftlab.models.methods import load_kwargs_for, load_trained

log = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16", "float16")

PROBE_TEXTS = [
    "the export check reads this sentence",
    "a second, somewhat longer probe sentence, so that the batch is padded",
    "great",
]

# Task shape -> the probe batch its head takes (only token ids and mask: every family accepts them).
PROBE_FORMS: dict[str, Callable[[dict], dict]] = {
    "classify": lambda batch: batch,
    **dict.fromkeys(CAUSAL_SHAPES, lambda batch: batch),
    "seq2seq": lambda batch: {**batch, "decoder_input_ids": batch["input_ids"]},  # (B, T): any ids will do
    "choose": lambda batch: {k: v.unsqueeze(1).repeat(1, 2, 1) for k, v in batch.items()},  # (B, 2 choices, T)
}


@dataclass
class MergedModel:
    """The merged model, ready to save, and what the check measured."""

    model: torch.nn.Module
    tokenizer: object
    dtype: str
    # max |logit| difference on the probe batch: saved (merged, cast to dtype) model vs base + adapter in float32
    max_logit_diff: float | None
    # QLoRA only: the same against the model as it trained (4-bit base + adapter)
    trained_as_logit_diff: float | None = None
    precision_note: str = ""


def probe_batch(tokenizer, shape: str) -> dict:
    encoded = tokenizer(PROBE_TEXTS, padding=True, return_tensors="pt")
    plain = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    return PROBE_FORMS[shape](plain)


@torch.no_grad()
def probe_logits(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    return model.eval()(**batch).logits.float()


def load_run_model(settings: RunSettings, adapter: Path, tokenizer, dequantise: bool = False) -> torch.nn.Module:
    """Base + the run's adapter, as evaluate.py builds it; dequantise=True turns a 4-bit base into float32 layers."""
    head = list(settings.model.head_modules) if settings.shape in LABELLED_SHAPES else []
    extra = load_kwargs_for(settings.peft, head)  # QLoRA: the 4-bit quantisation config it trained with
    model_settings = settings.model if extra else dataclasses.replace(settings.model, dtype="float32")
    pl.seed_everything(settings.seed, verbose=False)  # as prepare_job: weights not in the adapter start the same
    base = load_base_model(
        model_settings, settings.shape, list(settings.dataset.labels), pad_token_id=tokenizer.pad_token_id, **extra
    )
    if dequantise and extra:
        base = base.dequantize(dtype=torch.float32)  # bitsandbytes layers -> nn.Linear with the de-quantised weights
    return load_trained(base, settings.peft, adapter).eval()


def unwrap_modules_to_save(model: torch.nn.Module) -> None:
    """Put each trained head copy (peft's ModulesToSaveWrapper) in its wrapper's place, as merge_and_unload would.

    Done first because peft 0.21's IA3 unload copies `.weight` onto the unwrapped module, and a head module without
    one (DeBERTa's pooler) fails with AttributeError.
    """
    for name, module in list(model.named_modules()):
        if isinstance(module, ModulesToSaveWrapper):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, module.modules_to_save[module.active_adapters[0]])


def merge_peft(settings: RunSettings, adapter: Path, dtype: str) -> MergedModel:
    """merge_and_unload on a full-precision base, cast to dtype; logits checked against base + adapter."""
    tokenizer = load_tokenizer(settings.model)
    batch = probe_batch(tokenizer, settings.shape)
    trained_as, note = None, f"merged in float32, saved as {dtype}"
    if settings.peft.capabilities.base_4bit:  # trained on a quantised base (QLoRA)
        trained_as = probe_logits(load_run_model(settings, adapter, tokenizer), batch)
        note = (
            f"trained on a 4-bit {settings.peft.quant_type.upper()} base; merged into that base de-quantised to "
            f"float32 (the weights the adapter trained against; never into 4-bit weights), saved as {dtype}"
        )
    peft_model = load_run_model(settings, adapter, tokenizer, dequantise=True)
    reference = probe_logits(peft_model, batch)
    unwrap_modules_to_save(peft_model)
    merged = peft_model.merge_and_unload().to(getattr(torch, dtype))
    merged.config.dtype = dtype
    logits = probe_logits(merged, batch)
    result = MergedModel(
        model=merged,
        tokenizer=tokenizer,
        dtype=dtype,
        max_logit_diff=float((logits - reference).abs().max()),
        trained_as_logit_diff=None if trained_as is None else float((logits - trained_as).abs().max()),
        precision_note=note,
    )
    log.info(
        "%s; max |logit diff| vs base + adapter on %d probe sentences: %.3g",
        note,
        len(PROBE_TEXTS),
        result.max_logit_diff,
    )
    return result


def reload_whole(settings: RunSettings, adapter: Path, dtype: str) -> MergedModel:
    """full / head_only saved a whole model: reload it (cast to dtype); nothing to merge."""
    auto_class = getattr(transformers, AUTO_CLASSES[settings.shape])
    model = auto_class.from_pretrained(adapter, dtype=getattr(torch, dtype))
    tokenizer = transformers.AutoTokenizer.from_pretrained(adapter)
    return MergedModel(model, tokenizer, dtype, None, precision_note=f"whole model (no adapter), saved as {dtype}")


# What the run's adapter/ holds (the method's capabilities.adapter) -> how merge=true turns it into a plain model:
# a peft adapter folds into the weights (LoRA adds B·A to W, IA3 scales W's rows or columns, ...: peft's
# merge_and_unload); full / head_only already saved a whole model. Methods that cannot be folded (prefix, our
# parallel adapter, ...) say why in their record (capabilities.not_mergeable) and are exported as the adapter alone.
MERGERS: dict[str, Callable[[RunSettings, Path, str], MergedModel]] = {
    "peft": merge_peft,
    "model": reload_whole,
}

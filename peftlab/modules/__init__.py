"""LightningModule stage: one module class per task shape, built from the validated settings."""

from collections.abc import Callable

import torch

from peftlab.config import RunSettings
from peftlab.modules.base import PeftModule
from peftlab.modules.classification import ClassificationModule
from peftlab.modules.generation import GenerationModule


def _classification(settings: RunSettings, model, tokenizer, optimizer, warmup_ratio):
    return ClassificationModule(model, optimizer, warmup_ratio, len(settings.dataset.labels), settings.dataset.metrics)


def _generation(settings: RunSettings, model, tokenizer, optimizer, warmup_ratio):
    d = settings.dataset
    return GenerationModule(
        model,
        optimizer,
        warmup_ratio,
        d.metrics,
        tokenizer,
        d.generation,
        causal=settings.shape == "causal",
        max_generate_rows=d.max_eval_generate_rows,
    )


# Task shape (config/tasks.py) -> module factory.
MODULES: dict[str, Callable] = {
    "classify": _classification,
    "choose": _classification,
    "seq2seq": _generation,
    "causal": _generation,
}


def build_module(
    settings: RunSettings, model: torch.nn.Module, tokenizer, optimizer: Callable | None = None, warmup_ratio=0.0
) -> PeftModule:
    return MODULES[settings.shape](settings, model, tokenizer, optimizer, warmup_ratio)


__all__ = ["MODULES", "ClassificationModule", "GenerationModule", "PeftModule", "build_module"]

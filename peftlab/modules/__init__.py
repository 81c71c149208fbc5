"""LightningModule stage: one module class per task shape, built from the validated settings."""

from collections.abc import Callable

import torch

from peftlab.config.dataset_schema import DatasetSettings
from peftlab.config.tasks import CAUSAL_SHAPES
from peftlab.modules.base import PeftModule, Schedule
from peftlab.modules.classification import ClassificationModule
from peftlab.modules.generation import GenerationModule
from peftlab.modules.preference import PreferenceModule


def _classification(shape: str, d: DatasetSettings, model, tokenizer, optimizer, schedule: Schedule, objective):
    return ClassificationModule(model, optimizer, schedule, len(d.labels), d.metrics)


def _preference(shape: str, d: DatasetSettings, model, tokenizer, optimizer, schedule: Schedule, objective):
    return PreferenceModule(
        model, optimizer, schedule, d.metrics, tokenizer, d.generation, objective, d.max_eval_generate_rows
    )


def _generation(shape: str, d: DatasetSettings, model, tokenizer, optimizer, schedule: Schedule, objective):
    return GenerationModule(
        model,
        optimizer,
        schedule,
        d.metrics,
        tokenizer,
        d.generation,
        causal=shape in CAUSAL_SHAPES,
        max_generate_rows=d.max_eval_generate_rows,
    )


# Task shape (config/tasks.py) -> module factory.
MODULES: dict[str, Callable] = {
    "classify": _classification,
    "choose": _classification,
    "seq2seq": _generation,
    "causal": _generation,
    "chat": _generation,
    "prefer": _preference,
}


def build_module(
    shape: str,
    dataset: DatasetSettings,
    model: torch.nn.Module,
    tokenizer,
    optimizer: Callable | None = None,
    schedule: Schedule | None = None,
    objective=None,
) -> PeftModule:
    """The module of a task shape (config/tasks.py) for the dataset's labels, metrics and generation settings;
    objective: ObjectiveSettings (conf/objective), read by the preference shape."""
    return MODULES[shape](shape, dataset, model, tokenizer, optimizer, schedule or Schedule(), objective)


__all__ = ["MODULES", "ClassificationModule", "GenerationModule", "PeftModule", "Schedule", "build_module"]

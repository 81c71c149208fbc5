"""The start every job shares (train and evaluate): seed, tokenizer, checked data, base model (after the trainer,
whose build checks the hardware)."""

from dataclasses import dataclass

import pytorch_lightning as pl
import torch

from peftlab.config import RunSettings
from peftlab.config.tasks import LABELLED_SHAPES
from peftlab.data.datamodule import TextDataModule
from peftlab.models.loading import (
    check_max_length,
    load_base_model,
    load_tokenizer,
    use_activation_checkpointing,
)
from peftlab.models.methods import load_kwargs_for


@dataclass
class JobInputs:
    tokenizer: object
    datamodule: pl.LightningDataModule
    base: torch.nn.Module  # loaded as the method needs it (QLoRA: 4-bit), no adapter yet
    head: list[str]


def prepare_job(settings: RunSettings, device: torch.device | None = None) -> JobInputs:
    """Data is loaded and checked before the model, so bad rows fail fast. `device`: where this process trains (a
    4-bit base is quantised straight onto it)."""
    pl.seed_everything(settings.seed, workers=True)
    # Language-model heads are the pretrained (tied) output embedding: frozen like the rest of the base.
    head = list(settings.model.head_modules) if settings.shape in LABELLED_SHAPES else []
    tokenizer = load_tokenizer(settings.model)
    datamodule = TextDataModule(settings.dataset, tokenizer, settings.shape, seed=settings.seed)
    datamodule.prepare_data()
    base = load_base_model(
        settings.model,
        settings.shape,
        list(settings.dataset.labels),
        pad_token_id=tokenizer.pad_token_id,
        **load_kwargs_for(settings.peft, head, device),
    )
    check_max_length(base, settings.dataset.max_length, settings.model.name)
    if settings.model.activation_checkpointing:  # memory for compute, in training only
        use_activation_checkpointing(base, settings.model.activation_checkpointing, settings.model.name)
    return JobInputs(tokenizer, datamodule, base, head)

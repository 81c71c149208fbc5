"""The language-model loss of a fixed text sample with a run's trained weights, and with the base alone.

What a comparison reports as forgetting (peft's method comparison records it too): how much worse the model got at
text its task never trained on, so a method that wins on the task by overwriting the base shows it. Causal models
only: the sample is scored as plain next-token prediction, every token learnt.
"""

from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from peftlab.config import validate
from peftlab.config.tasks import CAUSAL_SHAPES
from peftlab.data.encoders import IGNORE_INDEX
from peftlab.errors import ConfigError
from peftlab.models.loading import load_base_model, load_tokenizer
from peftlab.models.methods import load_kwargs_for, load_trained


def base_and_adapted_loss(cfg: DictConfig, texts: list[str], adapter: Path, max_length: int = 128) -> tuple[float, ...]:
    """Mean next-token loss (nats per token) over `texts` of the run's base, then of the same base with `adapter`
    (what save_trained wrote) put on it: one model load for both. Rows are cut at max_length tokens and padded on
    the right, 8 at a time."""
    settings = validate(cfg, check_files=False)
    if settings.shape not in CAUSAL_SHAPES:
        raise ConfigError(f"model={settings.model.name}: forgetting is measured on causal language models only")
    tokenizer = load_tokenizer(settings.model)
    tokenizer.padding_side = "right"  # positions from 0 in every row, as in training
    base = load_base_model(settings.model, "causal", [], tokenizer.pad_token_id, **load_kwargs_for(settings.peft, []))
    before = text_loss(base.eval(), tokenizer, texts, max_length)
    return before, text_loss(load_trained(base, settings.peft, adapter).eval(), tokenizer, texts, max_length)


@torch.no_grad()
def text_loss(model: torch.nn.Module, tokenizer, texts: list[str], max_length: int) -> float:
    total, tokens = 0.0, 0
    for start in range(0, len(texts), 8):
        batch = tokenizer(texts[start : start + 8], truncation=True, max_length=max_length, padding=True,
                          return_tensors="pt")  # fmt: skip
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, IGNORE_INDEX)[:, 1:]
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        total += F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), reduction="sum").item()
        tokens += int((labels != IGNORE_INDEX).sum())
    return total / tokens

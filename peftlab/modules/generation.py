"""Generation (T5 seq2seq, GPT-2/BLOOM causal): teacher-forced loss; validation decodes with `generate`, scores text."""

from collections.abc import Callable

import torch

from peftlab.data.encoders import IGNORE_INDEX
from peftlab.metrics import text_metrics
from peftlab.modules.base import PeftModule


class GenerationModule(PeftModule):
    """`generation` holds model.generate arguments (dataset.generation); `causal` generates from the prompt alone."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: Callable | None,
        warmup_ratio: float,
        metric_names,
        tokenizer,
        generation: dict,
        causal: bool,
    ):
        super().__init__(model, optimizer, warmup_ratio)
        self.tokenizer = tokenizer
        self.generation = dict(generation)
        self.causal = causal
        self.val_metrics = text_metrics(list(metric_names), prefix="val/")
        self.predictions: list[dict] = []  # (prediction, reference) of the last validation, for eval reports

    @torch.no_grad()
    def generate_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[str]:
        """Decode from prompts (left-padded for causal models); only the new tokens are returned."""
        out = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **self.generation)
        if self.causal:
            out = out[:, input_ids.shape[1] :]
        return [text.strip() for text in self.tokenizer.batch_decode(out, skip_special_tokens=True)]

    def references(self, labels: torch.Tensor) -> list[str]:
        """Targets decoded like predictions, so a lower-casing tokenizer compares like with like."""
        ids = labels.masked_fill(labels == IGNORE_INDEX, self.tokenizer.pad_token_id)
        return [text.strip() for text in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]

    def on_validation_epoch_start(self) -> None:
        self.predictions = []

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out = self.model(**self.model_batch(batch))
        self.log("val/loss", out.loss, on_epoch=True, batch_size=len(batch["labels"]))
        if self.causal:
            predictions = self.generate_text(batch["prompt_input_ids"], batch["prompt_attention_mask"])
        else:
            predictions = self.generate_text(batch["input_ids"], batch["attention_mask"])
        references = self.references(batch["labels"])
        self.val_metrics.update(predictions, references)
        self.predictions += [{"prediction": p, "reference": r} for p, r in zip(predictions, references, strict=True)]

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute(), prog_bar=True)
        self.val_metrics.reset()

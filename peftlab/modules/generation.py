"""Generation (T5 seq2seq, GPT-2/BLOOM causal): teacher-forced loss; validation decodes with `generate`, scores text."""

from collections.abc import Callable

import torch

from peftlab.data.encoders import IGNORE_INDEX
from peftlab.metrics import text_metrics
from peftlab.modules.base import PeftModule, Schedule
from peftlab.modules.causal_loss import answer_only_loss


@torch.no_grad()
def generate_answers(model, tokenizer, batch: dict, generation: dict, causal: bool) -> list[str]:
    """Decode from the prompts of a collated batch; only the new tokens are returned, as stripped text.

    Causal models continue the left-padded prompt alone (the collator's prompt_*), seq2seq models read the input.
    """
    prefix = "prompt_" if causal else ""
    input_ids, attention_mask = batch[f"{prefix}input_ids"], batch[f"{prefix}attention_mask"]
    out = model.generate(input_ids=input_ids, attention_mask=attention_mask, **generation)
    if causal:
        out = out[:, input_ids.shape[1] :]
    return [text.strip() for text in tokenizer.batch_decode(out, skip_special_tokens=True)]


class GenerationModule(PeftModule):
    """`generation` holds model.generate arguments (dataset.generation); `causal` generates from the prompt alone."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: Callable | None,
        schedule: Schedule,
        metric_names,
        tokenizer,
        generation: dict,
        causal: bool,
        max_generate_rows: int | None = None,
    ):
        super().__init__(model, optimizer, schedule)
        self.tokenizer = tokenizer
        self.generation = dict(generation)
        self.causal = causal
        self.max_generate_rows = max_generate_rows  # over all processes; None: every validation row
        self.generated_rows = 0  # by this process, in the current validation
        self.val_metrics = text_metrics(list(metric_names), prefix="val/")
        self.test_metrics = text_metrics(list(metric_names), prefix="test/")
        self.predictions: list[dict] = []  # (prediction, reference) of the last validation or test, for eval reports

    def loss(self, batch: dict) -> torch.Tensor:
        """Causal LMs: the LM head on the answer tokens alone (modules/causal_loss.py); seq2seq: the model's own."""
        return answer_only_loss(self.model, batch) if self.causal else super().loss(batch)

    def loss_items(self, batch: dict) -> int:
        """Learnt tokens: causal LMs predict token t + 1 at position t, so the first label is never a target."""
        labels = batch["labels"][:, 1:] if self.causal else batch["labels"]
        return int((labels != IGNORE_INDEX).sum())

    def generate_text(self, batch: dict) -> list[str]:
        return generate_answers(self.model, self.tokenizer, batch, self.generation, self.causal)

    def _rows_to_generate(self, batch: dict) -> dict | None:
        """The batch's rows still within this process's share of max_generate_rows (None when none are)."""
        rows = len(batch["labels"])
        if self.max_generate_rows is None:
            return batch
        share = -(-self.max_generate_rows // max(self.trainer.world_size, 1))  # this process's part
        keep = min(rows, share - self.generated_rows)
        self.generated_rows += max(keep, 0)
        if keep <= 0:
            return None
        return batch if keep == rows else {k: v[:keep] if torch.is_tensor(v) else v for k, v in batch.items()}

    def references(self, batch: dict) -> list[str]:
        """Targets decoded like predictions, so a lower-casing tokenizer compares like with like. Causal rows: only
        the labels after the prompt generation starts from (a conversation's earlier answers are labelled too)."""
        labels = batch["labels"]
        if self.causal:
            prompt = batch["prompt_attention_mask"].sum(dim=1, keepdim=True)
            labels = labels.masked_fill(torch.arange(labels.shape[1], device=labels.device) < prompt, IGNORE_INDEX)
        ids = labels.masked_fill(labels == IGNORE_INDEX, self.tokenizer.pad_token_id)
        return [text.strip() for text in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]

    def on_validation_epoch_start(self) -> None:
        self.predictions = []
        self.generated_rows = 0

    def on_test_epoch_start(self) -> None:
        self.on_validation_epoch_start()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._score(batch, self.val_metrics, "val/")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        """The held-out split (trainer.test): the same scores as validation, under test/."""
        self._score(batch, self.test_metrics, "test/")

    def _score(self, batch: dict, metrics, prefix: str) -> None:
        self.log(f"{prefix}loss", self.loss(batch), on_epoch=True, batch_size=len(batch["labels"]), sync_dist=True)
        batch = self._rows_to_generate(batch)
        if batch is None:
            return
        predictions = self.generate_text(batch)
        references = self.references(batch)
        metrics.update(predictions, references)
        # Synced over processes by torchmetrics when Lightning computes them at the epoch's end.
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=True)
        self.predictions += [{"prediction": p, "reference": r} for p, r in zip(predictions, references, strict=True)]

"""Classification and multiple choice: both heads give one logit per class (or per choice); argmax is the answer."""

from collections.abc import Callable

import torch

from peftlab.metrics import classification_metrics
from peftlab.modules.base import PeftModule, Schedule


class ClassificationModule(PeftModule):
    def __init__(
        self, model: torch.nn.Module, optimizer: Callable | None, schedule: Schedule, num_labels: int, metric_names
    ):
        super().__init__(model, optimizer, schedule)
        self.val_metrics = classification_metrics(list(metric_names), num_labels, prefix="val/")
        self.test_metrics = classification_metrics(list(metric_names), num_labels, prefix="test/")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._score(batch, self.val_metrics, "val/")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        """The held-out split (trainer.test): the same scores as validation, under test/."""
        self._score(batch, self.test_metrics, "test/")

    def _score(self, batch: dict, metrics, prefix: str) -> None:
        out = self.model(**self.model_batch(batch))
        metrics.update(out.logits.argmax(dim=-1), batch["labels"])
        # Metric objects: Lightning calls compute() at the epoch's end (torchmetrics sums the states over all
        # processes first, so the value is that of the whole split) and resets them.
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=True)
        self.log(f"{prefix}loss", out.loss, on_epoch=True, batch_size=len(batch["labels"]), sync_dist=True)

"""torchmetrics registries: dataset.metrics names -> metric objects (names validated in config/validate.py)."""

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    BinaryF1Score,
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassMatthewsCorrCoef,
)
from torchmetrics.text import BLEUScore, ROUGEScore

METRICS = {
    "accuracy": lambda n: MulticlassAccuracy(num_classes=n, average="micro"),
    "f1": lambda n: MulticlassF1Score(num_classes=n, average="macro"),
    "mcc": lambda n: MulticlassMatthewsCorrCoef(num_classes=n),
    "binary_f1": lambda n: BinaryF1Score(),  # F1 of label 1 (GLUE's QQP/MRPC F1)
}


def classification_metrics(names: list[str], num_labels: int, prefix: str) -> MetricCollection:
    return MetricCollection({name: METRICS[name](num_labels) for name in names}, prefix=prefix)


class ExactMatch(Metric):
    """Share of predictions equal to their reference after stripping outer white space.

    torchmetrics' only exact match is SQuAD's, which also drops articles and punctuation: wrong for SQL or letters.
    """

    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("matches", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, preds: list[str], target: list[str]) -> None:
        self.matches += sum(p.strip() == t.strip() for p, t in zip(preds, target, strict=True))
        self.total += len(target)

    def compute(self) -> torch.Tensor:
        return self.matches / self.total.clamp(min=1)


class RougeL(ROUGEScore):
    """ROUGE-L F-measure as one number (ROUGEScore returns precision, recall and F for each key)."""

    def __init__(self, **kwargs):
        super().__init__(rouge_keys=("rougeL",), **kwargs)

    def compute(self) -> torch.Tensor:
        return super().compute()["rougeL_fmeasure"]


class Bleu(BLEUScore):
    """Corpus BLEU-4 with one reference per prediction."""

    def update(self, preds: list[str], target: list[str]) -> None:
        super().update(preds, [[t] for t in target])


TEXT_METRICS = {"accuracy": ExactMatch, "exact_match": ExactMatch, "rougeL": RougeL, "bleu": Bleu}


def text_metrics(names: list[str], prefix: str) -> MetricCollection:
    return MetricCollection({name: TEXT_METRICS[name]() for name in names}, prefix=prefix)

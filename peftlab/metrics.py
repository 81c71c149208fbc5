"""torchmetrics registry: dataset.metrics names -> metric objects (names validated in config/schema.py)."""

from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryF1Score,
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassMatthewsCorrCoef,
)

METRICS = {
    "accuracy": lambda n: MulticlassAccuracy(num_classes=n, average="micro"),
    "f1": lambda n: MulticlassF1Score(num_classes=n, average="macro"),
    "mcc": lambda n: MulticlassMatthewsCorrCoef(num_classes=n),
    "binary_f1": lambda n: BinaryF1Score(),  # F1 of label 1 (GLUE's QQP/MRPC F1)
}


def classification_metrics(names: list[str], num_labels: int, prefix: str) -> MetricCollection:
    return MetricCollection({name: METRICS[name](num_labels) for name in names}, prefix=prefix)

"""Parameter and disk-size accounting reported in metrics.json."""

from pathlib import Path

import torch


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) over distinct tensors, so tied weights count once."""
    seen: set[int] = set()
    trainable = total = 0
    for param in model.parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
    return trainable, total


def folder_bytes(path: str | Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())

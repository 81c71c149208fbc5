"""dataset.packing=true: causal training rows packed into bins of dataset.packing_length tokens, attention kept
inside each row.

Why by hand: TRL packs inside its SFTTrainer's dataset preparation and transformers' DataCollatorWithFlattening
puts a whole batch into one row; neither gives Lightning a dataset of fixed-capacity bins that its samplers can
shuffle and resume by index. The attention stays per row without a mask of our own: each row's position ids
restart at 0, and transformers (masking_utils.find_packed_sequence_indices) turns a restart into a block-diagonal
causal mask when no attention mask is passed; varlen flash attention reads the same position ids on GPUs.
"""

import bisect
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from peftlab.data.encoders import IGNORE_INDEX


def best_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Row indices grouped into bins of at most `capacity` tokens: longest row first, each into the fullest bin it
    still fits (ties: the earliest bin); a new bin when none has room. O(n log n) with the bins kept sorted by space.
    """
    bins: list[list[int]] = []
    spaces: list[tuple[int, int]] = []  # (space left, bin number), sorted
    for row in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        length = lengths[row]
        if length > capacity:
            raise ValueError(f"row {row} has {length} tokens, more than a bin's {capacity}")
        at = bisect.bisect_left(spaces, (length, -1))
        if at == len(spaces):
            bins.append([row])
            bisect.insort(spaces, (capacity - length, len(bins) - 1))
            continue
        space, number = spaces.pop(at)
        bins[number].append(row)
        bisect.insort(spaces, (space - length, number))
    return bins


class PackedRows(Dataset):
    """A dataset whose items are bins: each the list of its rows (encoded causal rows)."""

    def __init__(self, rows, capacity: int):
        self.rows = rows
        self.lengths = [len(ids) for ids in rows["input_ids"]]
        self.bins = best_fit_decreasing(self.lengths, capacity)

    def __len__(self) -> int:
        return len(self.bins)

    def __getitem__(self, index: int) -> list[dict]:
        return [self.rows[row] for row in self.bins[index]]

    def fill(self) -> float:
        """Share of the bins' tokens that are rows (the rest is padding at each bin's end)."""
        longest = max(sum(self.lengths[r] for r in b) for b in self.bins)
        return sum(self.lengths) / (len(self.bins) * longest)


@dataclass
class PackedCollator:
    """Bins -> one row each: the rows one after another, position ids restarting at every row, padded at the end.

    No attention mask goes to the model (`attention_mask` here only counts real tokens for the throughput figures):
    the position ids carry the row boundaries. Each row's first label is IGNORE_INDEX, so no row learns to predict
    the next row's first token; trailing padding is a segment of its own that no real token attends to (causal).
    """

    tokenizer: object

    def __call__(self, bins: list[list[dict]]) -> dict:
        width = max(sum(len(row["input_ids"]) for row in rows) for rows in bins)
        input_ids = torch.full((len(bins), width), self.tokenizer.pad_token_id, dtype=torch.long)
        labels = torch.full((len(bins), width), IGNORE_INDEX, dtype=torch.long)
        position_ids = torch.zeros((len(bins), width), dtype=torch.long)
        real = torch.zeros((len(bins), width), dtype=torch.long)
        for b, rows in enumerate(bins):
            at = 0
            for row in rows:
                n = len(row["input_ids"])
                input_ids[b, at : at + n] = torch.tensor(row["input_ids"])
                row_labels = torch.tensor(row["labels"])
                row_labels[0] = IGNORE_INDEX
                labels[b, at : at + len(row_labels)] = row_labels
                position_ids[b, at : at + n] = torch.arange(n)
                real[b, at : at + n] = 1
                at += n
            position_ids[b, at:] = torch.arange(width - at)
        return {"input_ids": input_ids, "position_ids": position_ids, "labels": labels, "attention_mask": real}

"""Length-bucketed batches in random order: less padding without a long-to-short sweep through each mega-batch."""

import torch
from torch.utils.data import Sampler


class ShuffledBucketSampler(Sampler[int]):
    """Indices whose consecutive `batch_size` blocks are rows of similar length; the blocks come in random order.

    Why not transformers' LengthGroupedSampler: it sorts each mega-batch (50 batches) and yields its batches
    longest-first, so every 50 steps the model sees long rows, then ever shorter ones. Here a random permutation is cut
    into mega-batches of `group_batches` batches, each sorted by length and cut into batches (little padding inside a
    batch), and then *all* full batches are shuffled together, so the order of batches is as random as plain shuffling.
    The one short batch (the data's remainder) comes last, so a DataLoader with the same batch_size cuts exactly
    these batches. Each pass draws from `generator`, so epochs differ and a seed repeats them.
    """

    def __init__(self, lengths: list[int], batch_size: int, group_batches: int = 50, generator=None):
        self.lengths = lengths
        self.batch_size = batch_size
        self.group_size = batch_size * group_batches
        self.generator = generator

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        full, remainder = [], []
        for start in range(0, len(order), self.group_size):
            group = sorted(order[start : start + self.group_size], key=self.lengths.__getitem__, reverse=True)
            for i in range(0, len(group), self.batch_size):
                batch = group[i : i + self.batch_size]
                (full if len(batch) == self.batch_size else remainder).append(batch)
        for i in torch.randperm(len(full), generator=self.generator).tolist():
            yield from full[i]
        for batch in remainder:
            yield from batch

"""Train sampler that resumes mid-epoch exactly: per-epoch order from (seed, epoch), already-seen batches skipped."""

from itertools import islice

import torch
from torch.utils.data import DistributedSampler, RandomSampler, Sampler


class EpochSeeded(Sampler[int]):
    """Wraps a sampler drawing from `generator`; set_epoch reseeds it with seed + epoch (as DistributedSampler does).

    Why: with one generator seeded once per DataModule, epoch e's order depends on every draw before it, so a job
    restarted in epoch e (fresh generator) would see epoch 0's order again. Lightning calls `set_epoch` each epoch.
    `resume_at(epoch, n)` drops the first n indices of that epoch's pass: the batches an interrupted attempt already
    trained on (a checkpoint taken at an epoch's last batch is resumed in the next epoch, where nothing is skipped).
    """

    def __init__(self, inner: Sampler[int], generator: torch.Generator, seed: int):
        self.inner, self.generator, self.seed = inner, generator, seed
        self.epoch = 0
        generator.manual_seed(seed)  # never told the epoch (a DDP wrapper around it): one stream, as before
        self._resume: tuple[int, int] | None = None

    def resume_at(self, epoch: int, seen: int) -> None:
        self._resume = (epoch, seen)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.generator.manual_seed(self.seed + epoch)

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self):
        skip = self._resume[1] if self._resume and self._resume[0] == self.epoch else 0
        self._resume = None
        yield from islice(iter(self.inner), skip, None)


class ShardedEpochSeeded(DistributedSampler):
    """This process's slice of an EpochSeeded order (several processes), resumable the same way.

    Why a DistributedSampler subclass: Lightning then uses it as it is; otherwise it wraps the sampler in its
    DistributedSamplerWrapper, which neither forwards `set_epoch` nor knows how far an interrupted epoch got.
    The order is padded to a multiple of the process count by repeating its head, as DistributedSampler does.
    """

    def __init__(self, inner: EpochSeeded, num_replicas: int, rank: int):
        super().__init__(inner, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.inner = inner
        self._resume: tuple[int, int] | None = None

    def resume_at(self, epoch: int, seen: int) -> None:
        self._resume = (epoch, seen)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.inner.set_epoch(epoch)

    def __iter__(self):
        order = list(self.inner)
        while len(order) < self.total_size:
            order += order[: self.total_size - len(order)]
        skip = self._resume[1] if self._resume and self._resume[0] == self.epoch else 0
        self._resume = None
        yield from order[self.rank : self.total_size : self.num_replicas][skip:]


def epoch_seeded_random(data_source, seed: int) -> EpochSeeded:
    """Plain shuffling, reseeded per epoch."""
    generator = torch.Generator()
    return EpochSeeded(RandomSampler(data_source, generator=generator), generator, seed)

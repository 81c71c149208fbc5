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
    """This process's whole batches of an EpochSeeded order (several processes), resumable the same way.

    The order is cut into `batch_size` blocks and the blocks are dealt out: rank r gets blocks r, r + n, r + 2n ...
    Why blocks and not rows: a length-grouped order's consecutive blocks are the alike-length batches, and striding
    row by row (DistributedSampler) would build each rank's batch from halves of two buckets, mixing lengths again.
    The block list is padded to a multiple of the process count by repeating its head blocks (as DistributedSampler
    pads rows), so every rank takes the same number of batches; the data's one short block stays last on its rank.
    Why a DistributedSampler subclass: Lightning then uses it as it is; otherwise it wraps the sampler in its
    DistributedSamplerWrapper, which neither forwards `set_epoch` nor knows how far an interrupted epoch got.
    """

    def __init__(self, inner: EpochSeeded, num_replicas: int, rank: int, batch_size: int = 1):
        super().__init__(inner, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.inner, self.batch_size = inner, batch_size
        self._resume: tuple[int, int] | None = None

    def resume_at(self, epoch: int, seen: int) -> None:
        self._resume = (epoch, seen)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.inner.set_epoch(epoch)

    def _blocks(self) -> list[list[int]]:
        """This rank's blocks of the dealt order; its own order depends only on (seed, epoch), as on one process."""
        order, size = list(self.inner), self.batch_size
        blocks = [order[i : i + size] for i in range(0, len(order), size)]
        full = [block for block in blocks if len(block) == size] or blocks
        padding = -len(blocks) % self.num_replicas
        blocks += [full[i % len(full)] for i in range(padding)]
        return blocks[self.rank :: self.num_replicas]

    def __len__(self) -> int:
        blocks, size = -(-len(self.inner) // self.batch_size), self.batch_size
        if len(self.inner) < size:  # one short block, repeated on every rank
            return len(self.inner)
        mine = -(-blocks // self.num_replicas)
        short = len(self.inner) % size
        holds_short = short and (blocks - 1) % self.num_replicas == self.rank
        return mine * size - (size - short if holds_short else 0)

    def __iter__(self):
        rows = [i for block in self._blocks() for i in block]
        skip = self._resume[1] if self._resume and self._resume[0] == self.epoch else 0
        self._resume = None
        yield from rows[skip:]


def epoch_seeded_random(data_source, seed: int) -> EpochSeeded:
    """Plain shuffling, reseeded per epoch."""
    generator = torch.Generator()
    return EpochSeeded(RandomSampler(data_source, generator=generator), generator, seed)

"""ShuffledBucketSampler: every row once per pass, batches of alike lengths, batch order random and seeded."""

import torch

from peftlab.data.resumable import EpochSeeded, ShardedEpochSeeded, epoch_seeded_random
from peftlab.data.sampling import ShuffledBucketSampler


def _batches(sampler, batch_size):
    order = list(sampler)
    return order, [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def test_each_row_once_alike_lengths_and_remainder_last():
    lengths = [(i * 37) % 101 + 1 for i in range(1003)]
    sampler = ShuffledBucketSampler(lengths, batch_size=8, group_batches=10, generator=torch.Generator().manual_seed(0))
    order, batches = _batches(sampler, 8)
    assert sorted(order) == list(range(1003)) and len(sampler) == 1003
    assert all(len(b) == 8 for b in batches[:-1]) and len(batches[-1]) == 1003 % 8
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches[:-1]]
    assert sum(spread) / len(spread) < 15  # random batches of this data spread over ~90


def test_batch_order_is_shuffled_not_long_to_short_and_seeded():
    lengths = list(range(1, 641))

    def maxima(seed):
        sampler = ShuffledBucketSampler(lengths, 8, group_batches=10, generator=torch.Generator().manual_seed(seed))
        return [max(lengths[i] for i in b) for b in _batches(sampler, 8)[1]]

    first = maxima(0)
    group = first[:10]  # a sorted-group sampler would give 10 decreasing maxima here
    assert group != sorted(group, reverse=True)
    assert maxima(0) == first and maxima(1) != first
    g = torch.Generator().manual_seed(0)
    sampler = ShuffledBucketSampler(lengths, 8, group_batches=10, generator=g)
    assert list(sampler) != list(sampler)  # the next epoch draws a new order


def test_sharded_epoch_order_is_disjoint_complete_and_resumes_on_each_rank():
    def shard(rank, epoch, resume=None):
        sampler = ShardedEpochSeeded(epoch_seeded_random(range(37), seed=4), num_replicas=2, rank=rank)
        if resume is not None:
            sampler.resume_at(epoch, resume)
        sampler.set_epoch(epoch)  # Lightning's call at the epoch start
        return list(sampler)

    first, second = shard(0, 1), shard(1, 1)
    assert len(first) == len(second) == 19 and set(first) | set(second) == set(range(37))  # one row repeated as pad
    whole = epoch_seeded_random(range(37), seed=4)
    whole.set_epoch(1)
    order = list(whole)
    padded = order + order[:1]
    assert first == padded[0::2] and second == padded[1::2]
    assert shard(0, 2) != first  # the next epoch draws a new order
    assert shard(0, 1, resume=6) == first[6:] and shard(1, 1, resume=6) == second[6:]


def test_each_rank_gets_whole_alike_length_batches_and_resumes():
    """DDP: the bucketed batches are dealt whole, so no rank's batch mixes two buckets' lengths."""
    lengths = [(i * 37) % 101 + 1 for i in range(195)]

    def grouped(seed=4):
        generator = torch.Generator()
        return EpochSeeded(ShuffledBucketSampler(lengths, 8, group_batches=25, generator=generator), generator, seed)

    def shard(rank, epoch=1, resume=None):
        sampler = ShardedEpochSeeded(grouped(), num_replicas=2, rank=rank, batch_size=8)
        if resume is not None:
            sampler.resume_at(epoch, resume)
        sampler.set_epoch(epoch)
        return sampler, list(sampler)

    whole = grouped()
    whole.set_epoch(1)
    buckets = _batches(whole, 8)[1]  # 24 full batches, then the short one (3 rows)
    (s0, r0), (s1, r1) = shard(0), shard(1)
    mine = [_batches(r, 8)[1] for r in (r0, r1)]
    assert len(mine[0]) == len(mine[1]) == 13  # same number of steps on both ranks
    assert mine[0] == buckets[0::2] and mine[1] == [*buckets[1::2], buckets[0]]  # whole buckets; padded by the head
    assert (len(s0), len(s1)) == (len(r0), len(r1)) == (12 * 8 + 3, 13 * 8)
    assert set(r0) | set(r1) == set(range(195))

    def spread(batches):
        return sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)

    strided = [_batches(list(whole)[rank::2], 8)[1] for rank in (0, 1)]  # DistributedSampler's row striding
    assert spread(mine[0] + mine[1]) * 2 < spread(strided[0] + strided[1])
    assert shard(0, resume=16)[1] == r0[16:] and shard(1, resume=16)[1] == r1[16:]

"""The trained weights as whole tensors on rank 0, however the strategy holds them: whole on every rank (one process,
DDP) or sharded across ranks (FSDP), so adapter/ is written by the same code under every strategy.

Why torch's `get_model_state_dict` and not Lightning's `lightning_module_state_dict()`: the latter follows the
strategy's checkpoint format (`state_dict_type="sharded"` returns shards), while the gather must always produce whole
tensors; torch's one API does that for FSDP (1 and 2), DDP and plain modules alike, and can skip frozen weights.
"""

import torch


def shards_parameters(strategy) -> bool:
    """Lightning strategies whose ranks each hold only a shard of every weight (FSDP, FSDP2 via ModelParallel)."""
    from pytorch_lightning.strategies import FSDPStrategy, ModelParallelStrategy

    return isinstance(strategy, FSDPStrategy | ModelParallelStrategy)


def gather_full_state(root: torch.nn.Module, frozen: bool = False, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every rank must call it (a collective where `root` is sharded); rank 0 gets whole CPU tensors, other ranks {}.

    `root`: the outermost module the strategy wraps (its FSDP root). `frozen`: also gather frozen weights (a method
    that saves the whole model). Buffers are kept (VeRA's shared projections are buffers). Keys lose `prefix` (the
    path from `root` to the model that saves them: `model.` from a LightningModule, whose DDP/FSDP wrappers' own
    prefixes torch drops).
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=not frozen)
    state = get_model_state_dict(root, options=options)
    return {key.removeprefix(prefix): value for key, value in state.items() if key.startswith(prefix)}

"""RngState: the random generators' states travel in every checkpoint, so dropout after a resume is the same."""

import random

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist


def _local_state() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # plain types and tensors: loads weights_only
    state = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_local_state(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class RngState(pl.Callback):
    """Saves the Python, NumPy and torch (CPU and CUDA) generator states of every process with each checkpoint and
    restores each process's own on resume.

    Why: Lightning checkpoints hold weights, optimizer, scheduler and loop position but not the generators, so a
    resumed run draws other dropout masks than the run it continues and ends with different weights. Per process,
    because ranks consume their generators differently (dropout draws as many numbers as their batch has elements).
    Restored when Lightning loads callback states, before the first resumed batch; nothing in between draws from the
    global generators (the loaders carry their own, see TextDataModule).
    """

    def state_dict(self) -> dict:
        # Lightning calls this on every rank while it builds a checkpoint (rank 0 then writes it): gather them all
        state = _local_state()
        if not _distributed():
            return {"per_rank": [state]}
        states: list = [None] * dist.get_world_size()
        dist.all_gather_object(states, state)
        return {"per_rank": states}

    def load_state_dict(self, state_dict: dict) -> None:
        states = state_dict["per_rank"]
        rank = dist.get_rank() if _distributed() else 0
        if rank < len(states):  # a run resumed on more processes than it was saved from draws anew on the extra ones
            _set_local_state(states[rank])

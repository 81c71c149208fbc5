"""RngState: the random generators' states travel in every checkpoint, so dropout after a resume is the same."""

import random

import numpy as np
import pytorch_lightning as pl
import torch


class RngState(pl.Callback):
    """Saves the Python, NumPy and torch (CPU and CUDA) generator states with each checkpoint; restores them on resume.

    Why: Lightning checkpoints hold weights, optimizer, scheduler and loop position but not the generators, so a
    resumed run draws other dropout masks than the run it continues and ends with different weights. Restored when
    Lightning loads callback states, before the first resumed batch; nothing in between draws from the global
    generators (the loaders carry their own, see TextDataModule). The state is rank 0's when several processes ran.
    """

    def state_dict(self) -> dict:
        kind, keys, pos, has_gauss, cached = np.random.get_state()  # plain types and tensors: loads weights_only
        numpy_state = [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]
        state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        random.setstate(state_dict["python"])
        kind, keys, pos, has_gauss, cached = state_dict["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])

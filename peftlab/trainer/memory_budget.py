"""hardware.max_memory_gb: the largest micro-batch whose training step fits the budget, the rest accumulated.

Why not Lightning's BatchSizeFinder: it grows the batch until CUDA raises out-of-memory, which a CPU never does (the
process swaps, or is killed), and it changes the batch rather than splitting it. Here the step's activations are
measured once (what autograd keeps for the backward of the longest rows), the peak is estimated from them, and each
batch of dataset.batch_size rows is cut into micro-batches whose gradients add up to the same step (the module weighs
each micro-batch by its loss items): the same effective batch and the same loss curve in less memory.
"""

import contextlib
import ctypes
import logging

import pytorch_lightning as pl
import torch

from peftlab.errors import ConfigError

log = logging.getLogger(__name__)

GB = 1e9
# Measured on 2 CPU cores (bench/README.md, "Memory on a laptop"): the RSS of a process before any weights (Python,
# torch, transformers, Lightning, the tokenizer and rows, what glibc keeps of the probe), and a step's peak over what
# autograd keeps (the forward's temporaries, the backward's gradients, allocator slack). SmolLM2-135M + LoRA, 274 MB
# kept per row of 160 tokens: 10.51 GB peak with 16 rows, 2.90 GB with 2 — both within 1 % of this estimate.
PROCESS_GB = 1.2
PEAK_PER_KEPT = 2.0
PROBE_ROWS = 1


def saved_activation_bytes(module: pl.LightningModule, batch: dict) -> int:
    """Bytes autograd keeps for the backward of `module.loss(batch)`: each storage once, weights not counted."""
    weights = {p.untyped_storage().data_ptr() for p in module.parameters()}
    kept: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            kept[storage.data_ptr()] = storage.nbytes()
        return tensor

    # fork_rng: the probe's dropout masks must not shift the run's (a budget changes no draw of the training)
    with torch.random.fork_rng(), torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module.loss(batch)
    return sum(kept.values())


def give_back_freed_memory() -> None:
    """glibc keeps the probe's freed activations mapped, and the training steps do not reuse all of it (measured: +0.9
    GB of peak for SmolLM2); malloc_trim returns it to the system. No library wraps it; other C libraries: a no-op."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def longest_rows(datamodule, rows: int) -> dict:
    """The collated batch of the `rows` longest training items (rows, or bins when packed): the step whose
    activations set the peak."""
    lengths = datamodule.train_lengths()
    longest = sorted(range(len(lengths)), key=lengths.__getitem__, reverse=True)[:rows]
    return datamodule.train_collator([datamodule.train_items[i] for i in longest])


def fixed_bytes(module: pl.LightningModule) -> int:
    """The process, the weights, and for each trainable weight its gradient and two AdamW moments."""
    weights = sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])
    trainable = sum(p.numel() * p.element_size() for p in module.parameters() if p.requires_grad)
    return int(PROCESS_GB * GB) + weights + 3 * trainable


def choose_micro_batch(batch_size: int, budget: int, fixed: int, per_row: int) -> int | None:
    """The largest divisor of batch_size whose estimated peak fits the budget (bytes); None when one row does not."""
    fits = [
        m for m in range(batch_size, 0, -1) if batch_size % m == 0 and fixed + PEAK_PER_KEPT * m * per_row <= budget
    ]
    return fits[0] if fits else None


class MemoryBudget(pl.Callback):
    """Sets the micro-batch and gradient accumulation of a fit before its optimizer is built (setup)."""

    def __init__(self, max_memory_gb: float):
        self.max_memory_gb = max_memory_gb
        self.chosen: dict | None = None  # {"micro_batch", "accumulate"}: checkpointed, so a resume keeps them

    def state_dict(self) -> dict:
        return dict(self.chosen or {})

    def load_state_dict(self, state: dict) -> None:
        """A resumed fit continues with the micro-batch its checkpoint was trained with (the data position counts
        micro-batches), whatever the estimate says on this machine; Lightning restores this before the optimizer."""
        if state and self.chosen and state != self.chosen:
            self._apply(self._trainer, state["micro_batch"], state["accumulate"])

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        datamodule = trainer.datamodule
        batch_size = datamodule.settings.batch_size
        probe = longest_rows(datamodule, min(PROBE_ROWS, batch_size))
        per_row = saved_activation_bytes(pl_module, probe) // len(probe["labels"])
        give_back_freed_memory()
        fixed = fixed_bytes(pl_module)
        micro = choose_micro_batch(batch_size, int(self.max_memory_gb * GB), fixed, per_row)
        tokens = probe["input_ids"].shape[-1]
        if micro is None:
            need = (fixed + PEAK_PER_KEPT * per_row) / GB
            raise ConfigError(
                f"hardware.max_memory_gb={self.max_memory_gb}: one row of {tokens} tokens needs about {need:.1f} GB "
                "with this model; raise it, lower dataset.max_length or set model.activation_checkpointing=1"
            )
        self._trainer = trainer
        self._apply(trainer, micro, trainer.accumulate_grad_batches * (batch_size // micro))
        estimate = (fixed + PEAK_PER_KEPT * micro * per_row) / GB
        if trainer.is_global_zero:
            log.info(
                "hardware.max_memory_gb=%g: micro-batch %d × %d accumulated (dataset.batch_size=%d); estimated "
                "peak %.1f GB (%.0f MB of activations per row of %d tokens)",
                self.max_memory_gb, micro, batch_size // micro, batch_size, estimate, per_row / 1e6, tokens,
            )  # fmt: skip

    def _apply(self, trainer: pl.Trainer, micro: int, accumulate: int) -> None:
        trainer.datamodule.micro_batch_size = micro
        trainer.accumulate_grad_batches = accumulate
        self.chosen = {"micro_batch": micro, "accumulate": accumulate}

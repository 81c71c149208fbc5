"""RunStats: wall time, throughput, peak memory and the per-validation metric history of a fit."""

import contextlib
import logging
import resource
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import RichModelSummary
from pytorch_lightning.utilities.model_summary import get_human_readable_count

from peftlab.trainer.process_clock import seconds_since_process_start

log = logging.getLogger(__name__)


PROC_SELF = Path("/proc/self")


def reset_peak_rss() -> None:
    """Restart the kernel's high-water mark where Linux allows it (clear_refs "5").

    A -m sweep runs its jobs in one process, and ru_maxrss never falls: without this every job after the first would
    report the largest peak of the jobs before it.
    """
    # Not Linux (or not allowed): peak_rss_mb falls back to the process-lifetime peak.
    with contextlib.suppress(OSError):
        (PROC_SELF / "clear_refs").write_text("5")


def peak_rss_mb() -> float:
    """Peak resident memory since reset_peak_rss (Linux VmHWM), else of the process (ru_maxrss: KiB Linux, B macOS)."""
    try:
        for line in (PROC_SELF / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


_process_reached_a_step = False  # start-up is measured once per process: a -m sweep's later jobs paid it already


MEMORY_KEYS = ("rss_mb", "cuda_mb")  # peak memory of a process: host RSS, and allocated on its GPU when it has one


class RunStats(pl.Callback):
    """Measures what metrics.json reports; prints one line per validation with its metrics.

    Its counts travel in every checkpoint (state_dict): a resumed run's metrics.json holds the whole curve, and
    its seconds, samples and tokens count from the run's first step, as an uninterrupted run's would."""

    def __init__(self) -> None:
        self.history: list[dict] = []
        self.train_samples = 0
        self.earlier_train_seconds = 0.0  # training seconds of the attempts before a resume
        self._tokens = None  # non-padding input tokens seen in training (the FLOPs estimate's T), on the device
        self.fit_seconds = 0.0
        self.val_seconds = 0.0
        self._fit_start = self._val_start = 0.0
        self.per_rank: list[dict] = []
        self.startup_seconds: float | None = None  # process start -> first training batch (imports, load, data)

    def on_fit_start(self, trainer, pl_module) -> None:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        reset_peak_rss()
        self._fit_start = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        global _process_reached_a_step
        if not _process_reached_a_step:
            _process_reached_a_step = True
            self.startup_seconds = round(seconds_since_process_start(), 2)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.train_samples += len(batch["labels"])
        if "attention_mask" in batch:  # summed on the device: no host sync in the training step
            count = batch["attention_mask"].sum()
            if "rejected_attention_mask" in batch:  # preference pairs: both answers' sequences are trained on
                count = count + batch["rejected_attention_mask"].sum()
            self._tokens = count if self._tokens is None else self._tokens + count

    def on_validation_start(self, trainer, pl_module) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        self.val_seconds += time.perf_counter() - self._val_start
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        # Training seconds so far (validation excluded) and tokens seen: the x-axes of the sweep report's curves.
        elapsed = time.perf_counter() - self._fit_start - self.val_seconds + self.earlier_train_seconds
        point = {"epoch": trainer.current_epoch, "step": trainer.global_step, "train_time_s": round(elapsed, 3)}
        self.history.append({**point, "train_tokens": self.train_tokens, **metrics})
        if trainer.is_global_zero:
            shown = "  ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
            log.info("epoch %d step %d  %s", trainer.current_epoch, trainer.global_step, shown)

    def on_train_end(self, trainer, pl_module) -> None:
        """Totals over processes, at train end: the collectives need the module still on its device (Lightning's
        teardown moves it to the CPU before on_fit_end, and NCCL refuses CPU tensors)."""
        mine = self._peak_memory()
        self.per_rank = [{"rank": 0, **mine}]
        if trainer.world_size > 1:  # each process counted its own shard: samples/s is for all of them
            counts = torch.tensor([self.train_samples, self.train_tokens], device=pl_module.device)
            counts = trainer.strategy.reduce(counts, reduce_op="sum")
            self.train_samples, self._tokens = int(counts[0]), counts[1]
            # Each rank's own peak (its GPU, its process): one rank out of memory is what a user must see.
            peaks = torch.tensor([mine.get(k, -1.0) for k in MEMORY_KEYS], device=pl_module.device, dtype=torch.float64)
            gathered = trainer.strategy.all_gather(peaks).cpu().tolist()
            self.per_rank = [
                {"rank": r, **{k: round(v, 1) for k, v in zip(MEMORY_KEYS, row, strict=True) if v >= 0}}
                for r, row in enumerate(gathered)
            ]

    def on_fit_end(self, trainer, pl_module) -> None:
        self.fit_seconds = time.perf_counter() - self._fit_start

    def state_dict(self) -> dict:
        elapsed = time.perf_counter() - self._fit_start - self.val_seconds
        return {"history": self.history, "train_samples": self.train_samples, "train_tokens": self.train_tokens,
                "train_seconds": self.earlier_train_seconds + elapsed}  # fmt: skip

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict["history"])
        self.train_samples = int(state_dict["train_samples"])
        self._tokens = int(state_dict["train_tokens"]) or None
        self.earlier_train_seconds = float(state_dict["train_seconds"])

    @staticmethod
    def _peak_memory() -> dict:
        memory = {"rss_mb": round(peak_rss_mb(), 1)}
        if torch.cuda.is_available():
            memory["cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        return memory

    @property
    def train_tokens(self) -> int:
        return int(self._tokens) if self._tokens is not None else 0

    @property
    def train_seconds(self) -> float:
        """Fit time without validation (every attempt's, after a resume): what samples/s is measured against."""
        return max(self.fit_seconds - self.val_seconds + self.earlier_train_seconds, 1e-9)

    def summary(self) -> dict:
        return {
            "startup_s": self.startup_seconds,  # null for a sweep's later jobs (same process)
            "fit_time_s": round(self.fit_seconds, 2),
            "train_time_s": round(self.train_seconds, 2),
            "train_samples": self.train_samples,
            "train_tokens": self.train_tokens,
            "samples_per_s": round(self.train_samples / self.train_seconds, 2),
            "peak_memory": self._peak_memory(),  # this process (rank 0)
            "peak_memory_per_rank": self.per_rank,
        }


class ParamSummary(RichModelSummary):
    """Lightning's rich model summary without its FLOPs column and "Total FLOPs: 0" line.

    Lightning counts FLOPs only for a module with an `example_input_array`, which ours has none of (its inputs
    depend on the dataset), so those always read 0. The sweep report estimates compute from the tokens seen instead.
    """

    @staticmethod
    def summarize(summary_data, total_parameters, trainable_parameters, model_size, total_training_modes,
                  total_flops, **summarize_kwargs) -> None:  # fmt: skip
        from rich import get_console
        from rich.table import Table

        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        for name, _ in columns:
            table.add_column(name, justify="right" if name.startswith("Params") else "left")
        for row in zip(*(values for _, values in columns), strict=True):
            table.add_row(*row)
        console = get_console()
        console.print(table)
        console.print(
            f"Trainable params: {get_human_readable_count(trainable_parameters)}  ·  "
            f"Total params: {get_human_readable_count(total_parameters)}  ·  "
            f"size {model_size:.1f} MB  ·  modules in train mode {total_training_modes['train']}, "
            f"eval mode {total_training_modes['eval']}"
        )

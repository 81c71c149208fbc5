"""What every task's LightningModule shares: the optimiser over trainable weights and trainable-only checkpoints."""

from collections.abc import Callable
from dataclasses import dataclass

import pytorch_lightning as pl
import torch
from transformers import get_linear_schedule_with_warmup

from peftlab.errors import PeftlabError
from peftlab.models.method_hooks import after_optimizer_step, build_optimizer

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


@dataclass(frozen=True)
class Schedule:
    """The learning-rate schedule: linear warm-up over warmup_ratio of total_steps, then linear decay to 0.

    total_steps None: the run's own length (the trainer's estimate). Set, it lets a run stop before the schedule
    ends and be continued later exactly as one uninterrupted run (compare's successive-halving rungs)."""

    warmup_ratio: float = 0.0
    total_steps: int | None = None


class PeftModule(pl.LightningModule):
    """Trains whatever parameters the PEFT method left trainable; checkpoints hold only those."""

    # Batch keys the wrapped transformers model takes; collators may add others (e.g. prompts for generation).
    model_inputs: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids", "labels")

    def __init__(self, model: torch.nn.Module, optimizer: Callable | None, schedule: Schedule):
        super().__init__()
        self.model = model
        self.optimizer_factory = optimizer  # functools.partial from Hydra (_partial_: true); None for eval only
        self.schedule = schedule
        # Checkpoints drop the frozen base (on_save_checkpoint), so restoring must not demand it
        # (Lightning #19149, #21053); on_load_checkpoint checks the trainable weights are all there instead.
        self.strict_loading = False
        self.window_items = 0  # loss items (rows or learnt tokens) of the optimizer step's micro-batches so far

    def model_batch(self, batch: dict) -> dict:
        return {k: v for k, v in batch.items() if k in self.model_inputs}

    def forward(self, **batch):
        return self.model(**self.model_batch(batch))

    def loss(self, batch: dict) -> torch.Tensor:
        return self.model(**self.model_batch(batch)).loss

    def loss_items(self, batch: dict) -> int:
        """How many terms the batch's mean loss averages: rows (tasks whose loss is per row)."""
        return len(batch["labels"])

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        # sync_dist: the epoch's loss is the mean over all processes, not rank 0's shard alone.
        size = len(batch["labels"])
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=size, sync_dist=True)
        if self.trainer.accumulate_grad_batches == 1:
            return loss
        # Accumulated micro-batches: their losses summed here, divided by the step's item count before it steps
        # (on_before_optimizer_step), so the step's gradient is that of the whole batch's mean, however the tokens
        # fall into micro-batches. A mean of micro-batch means (Lightning's plain accumulation) would weigh a token
        # of a short micro-batch more: the HF Trainer's gradient accumulation bug (fixed there by num_items_in_batch).
        items = self.loss_items(batch)
        self.window_items += items
        return loss * items

    def on_before_optimizer_step(self, optimizer) -> None:
        """Lightning divided each micro-batch's loss by accumulate_grad_batches (and DDP averaged over processes):
        make that the step's item count over all processes, the same on every one."""
        if self.trainer.accumulate_grad_batches == 1:
            return
        items = torch.tensor(float(self.window_items), device=self.device)
        total = float(self.trainer.strategy.reduce(items, reduce_op="sum"))
        self.window_items = 0
        if total:
            scale = self.trainer.accumulate_grad_batches * self.trainer.world_size / total
            for param in self.model.parameters():
                if param.grad is not None:
                    param.grad.mul_(scale)

    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, param in self.model.named_parameters():
            if param.requires_grad:
                (no_decay if any(k in name for k in NO_DECAY) else decay).append(param)
        total = self.schedule.total_steps or int(self.trainer.estimated_stepping_batches)
        groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
        optimizer = build_optimizer(self.model, self.optimizer_factory, groups, total)  # LoRA+, AdaLoRA: their own
        scheduler = get_linear_schedule_with_warmup(optimizer, int(self.schedule.warmup_ratio * total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        after_optimizer_step(self.model, self.global_step)  # AdaLoRA reallocates ranks (gradients still present)

    def trainable_state_keys(self) -> set[str]:
        return {name for name, p in self.named_parameters() if p.requires_grad}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        keep = self.trainable_state_keys()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        missing = sorted(self.trainable_state_keys() - set(checkpoint["state_dict"]))
        if missing:
            raise PeftlabError(
                f"checkpoint does not match this model/method: {len(missing)} trainable tensors missing "
                f"(first: {missing[0]}); resume with the same model= and peft= as the run that wrote it"
            )

"""Preference tuning (DPO, IPO, ORPO) of a decoder on (prompt, chosen, rejected) batches.

The reference of DPO and IPO is the same base with the adapter disabled (peft's `disable_adapter()`), so no second
copy of the weights is held; its log-probabilities are computed in eval mode (deterministic) and, with
objective.cache_reference, kept per row after the first time. The losses are a few lines over per-answer
log-probabilities, written here rather than taken from TRL's DPOTrainer because the loop, checkpoints, loggers and
sweeps are Lightning's (TRL's trainer is an HF Trainer); bench/ compares the two on the same rows.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F

from peftlab.data.encoders import IGNORE_INDEX
from peftlab.modules.base import Schedule
from peftlab.modules.causal_loss import backbone_and_head
from peftlab.modules.generation import GenerationModule

ANSWERS = ("input_ids", "attention_mask", "labels")


def answer_logps(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: the summed log-probability of its answer tokens (labels != IGNORE_INDEX) and their number.

    Like causal_loss.answer_only_loss, the LM head runs on the answer positions only where the model allows it."""
    input_ids, attention_mask, labels = (batch[k] for k in ANSWERS)
    targets = labels[:, 1:]  # position t predicts token t + 1
    learnt = targets != IGNORE_INDEX
    parts = backbone_and_head(model)
    if parts is None:  # prompt learning: the peft wrapper's forward (virtual tokens come first: keep the last T)
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, -input_ids.shape[1] :]
        logits = logits[:, :-1][learnt]
    else:
        backbone, head = parts
        hidden = backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = head(hidden[:, :-1][learnt])
    token_logps = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[learnt].unsqueeze(-1)).squeeze(-1)
    rows = torch.arange(len(labels), device=labels.device).unsqueeze(1).expand_as(targets)[learnt]
    sums = torch.zeros(len(labels), device=labels.device, dtype=token_logps.dtype).index_add(0, rows, token_logps)
    return sums, learnt.sum(dim=1)


def both_answers(batch: dict) -> dict:
    """The chosen rows then the rejected ones as one batch (the collator padded them to one width)."""
    return {k: torch.cat([batch[k], batch[f"rejected_{k}"]]) for k in ANSWERS}


def split_logps(sums: torch.Tensor, counts: torch.Tensor) -> dict:
    """both_answers' per-row sums and counts -> the chosen and rejected halves preference_loss reads."""
    n = len(sums) // 2
    return {"chosen": sums[:n], "rejected": sums[n:], "chosen_n": counts[:n], "rejected_n": counts[n:]}


def preference_loss(
    name: str, beta: float, label_smoothing: float, policy: dict, reference: dict | None, sft_weight: float = 0.0
) -> dict:
    """Per pair: the loss and the implicit rewards, from log-probability sums (`chosen`, `rejected`) and token
    counts (`chosen_n`, `rejected_n`) of the policy and, for dpo/ipo, the reference.

    dpo: -log σ(β·h)·(1 - ε) - log σ(-β·h)·ε with h = (π_c - π_r) - (ref_c - ref_r) on summed log-probs;
    ipo: (h - 1/(2β))² on per-token means; orpo: the chosen answer's mean NLL - β·log σ(log-odds ratio), on
    per-token means (no reference). Rewards: β times the log-probs the loss used, minus the reference's.
    sft_weight (dpo/ipo): plus that weight times the chosen answer's mean NLL (RPO)."""
    if name == "orpo":
        chosen, rejected = policy["chosen"] / policy["chosen_n"], policy["rejected"] / policy["rejected_n"]
        log_odds = (chosen - rejected) - (torch.log1p(-torch.exp(chosen)) - torch.log1p(-torch.exp(rejected)))
        loss = -chosen - beta * F.logsigmoid(log_odds)
        return {"loss": loss, "chosen_reward": beta * chosen, "rejected_reward": beta * rejected}
    mean = name == "ipo"
    p_c, p_r, r_c, r_r = (
        side[key] / side[f"{key}_n"] if mean else side[key]
        for side, key in ((policy, "chosen"), (policy, "rejected"), (reference, "chosen"), (reference, "rejected"))
    )
    h = (p_c - p_r) - (r_c - r_r)
    if name == "ipo":
        loss = (h - 1 / (2 * beta)) ** 2
    else:
        loss = -F.logsigmoid(beta * h) * (1 - label_smoothing) - F.logsigmoid(-beta * h) * label_smoothing
    if sft_weight:
        loss = loss - sft_weight * policy["chosen"] / policy["chosen_n"]
    return {"loss": loss, "chosen_reward": beta * (p_c - r_c), "rejected_reward": beta * (p_r - r_r)}


class PreferenceModule(GenerationModule):
    """Trains a preference objective; validates with the same loss, its reward statistics, and the task's
    generation metrics against the chosen answers (the GenerationModule's validation)."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: Callable | None,
        schedule: Schedule,
        metric_names,
        tokenizer,
        generation: dict,
        objective,
        max_generate_rows: int | None = None,
    ):
        super().__init__(model, optimizer, schedule, metric_names, tokenizer, generation, True, max_generate_rows)
        self.objective = objective  # ObjectiveSettings: name, beta, label_smoothing, cache_reference
        self.reference_cache: dict[bytes, tuple[float, float]] = {}
        self.stats: dict[str, torch.Tensor] = {}  # of the last loss(): logged by the step that called it

    def loss_items(self, batch: dict) -> int:
        """Pairs: the objective is a mean over pairs."""
        return len(batch["labels"])

    @torch.no_grad()
    def reference_logps(self, batch: dict) -> dict:
        """The base's log-probabilities (adapter disabled, eval mode), from the cache where the row was seen."""
        both = both_answers(batch)
        keys = [ids[mask.bool()].cpu().numpy().tobytes() for ids, mask in zip(both["input_ids"], both["attention_mask"],
                                                                              strict=True)]  # fmt: skip
        cache = self.objective.cache_reference
        todo = [i for i, key in enumerate(keys) if not cache or key not in self.reference_cache]
        computed: dict[bytes, tuple[float, float]] = {}
        if todo:
            training = self.model.training
            self.model.eval()
            try:
                with self.model.disable_adapter():
                    sums, counts = answer_logps(self.model, {k: v[todo] for k, v in both.items()})
            finally:
                self.model.train(training)
            computed = dict(zip((keys[i] for i in todo), zip(sums.tolist(), counts.tolist(), strict=True), strict=True))
            if cache:
                self.reference_cache.update(computed)
        values = [computed[k] if k in computed else self.reference_cache[k] for k in keys]
        device = batch["input_ids"].device
        sums = torch.tensor([v[0] for v in values], device=device)
        counts = torch.tensor([v[1] for v in values], device=device)
        return split_logps(sums, counts)

    def loss(self, batch: dict) -> torch.Tensor:
        o = self.objective
        policy = split_logps(*answer_logps(self.model, both_answers(batch)))
        reference = None if o.name == "orpo" else self.reference_logps(batch)
        out = preference_loss(o.name, o.beta, o.label_smoothing, policy, reference, o.sft_weight)
        chosen, rejected = out["chosen_reward"].detach(), out["rejected_reward"].detach()
        self.stats = {
            "rewards/chosen": chosen.mean(),
            "rewards/rejected": rejected.mean(),
            "rewards/accuracy": (chosen > rejected).float().mean(),
            "rewards/margin": (chosen - rejected).mean(),
            "logps/chosen": policy["chosen"].detach().mean(),
            "logps/rejected": policy["rejected"].detach().mean(),
        }
        return out["loss"].mean()

    def log_stats(self, prefix: str, batch: dict, **kwargs) -> None:
        size = len(batch["labels"])
        for name, value in self.stats.items():
            self.log(f"{prefix}{name}", value, batch_size=size, sync_dist=True, **kwargs)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = super().training_step(batch, batch_idx)
        self.log_stats("train/", batch, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        super().validation_step(batch, batch_idx)
        self.log_stats("val/", batch, on_epoch=True)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        super().test_step(batch, batch_idx)
        self.log_stats("test/", batch, on_epoch=True)

"""Collators of our own: decoder-only generation rows and preference pairs (data/by_shape.py has the rest)."""

from dataclasses import dataclass

import torch

from peftlab.data.encoders import IGNORE_INDEX


@dataclass
class CausalCollator:
    """Right-padded prompt+answer for the loss, and the prompts alone, left-padded, for `generate`.

    transformers has no collator that returns both views of one batch (DataCollatorForSeq2Seq pads labels but
    knows nothing of prompts), so this one does; padding itself is the tokenizer's.
    """

    tokenizer: object

    def __call__(self, features: list[dict]) -> dict:
        pad = self.tokenizer.pad
        full = pad([{"input_ids": f["input_ids"]} for f in features], padding_side="right", return_tensors="pt")
        labels = torch.full_like(full["input_ids"], IGNORE_INDEX)
        for i, f in enumerate(features):
            labels[i, : len(f["labels"])] = torch.tensor(f["labels"])
        prompts = [{"input_ids": f["input_ids"][: f["prompt_length"]]} for f in features]
        prompt = pad(prompts, padding_side="left", return_tensors="pt")
        return {
            "input_ids": full["input_ids"],
            "attention_mask": full["attention_mask"],
            "labels": labels,
            "prompt_input_ids": prompt["input_ids"],
            "prompt_attention_mask": prompt["attention_mask"],
        }


@dataclass
class PreferenceCollator(CausalCollator):
    """CausalCollator's batch of the chosen answers, plus the rejected ones as rejected_*, padded to the same length
    so one forward pass scores both (the module concatenates them)."""

    def __call__(self, features: list[dict]) -> dict:
        rejected = [{"input_ids": f["rejected_input_ids"], "labels": f["rejected_labels"], "prompt_length": 1}
                    for f in features]  # fmt: skip
        both = super().__call__([*features, *rejected])  # padded together: one width
        n = len(features)
        batch = {k: v[:n] for k, v in both.items()}
        batch.update({f"rejected_{k}": both[k][n:] for k in ("input_ids", "attention_mask", "labels")})
        return batch

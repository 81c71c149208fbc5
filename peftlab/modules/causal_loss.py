"""A causal LM's loss with the LM head run only where a label is learnt (the answer), not on every prompt token.

Why: a decoder's loss masks the prompt, yet the model's own forward projects *every* position onto the vocabulary
(SmolLM2: 576 × 49,152, a fifth of its matmuls) and log-softmaxes it. Running the backbone, then the head on the
answer positions alone gives the same loss and gradients (a masked position's logits get no gradient), at a quarter
less time per step on text->SQL (bench/README.md). transformers' `logits_to_keep` cannot do this per row (one index
set for the whole batch), and TRL's fused head scores every position off GPU, so it is done here.
"""

import torch
from torch.nn.functional import cross_entropy

from peftlab.data.encoders import IGNORE_INDEX

# Config fields by which a model rescales its logits inside forward(): such a model keeps its own forward.
LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier")


def backbone_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    """(backbone, LM head) of a causal LM whose forward is just head(backbone(x)); None when it is more than that.

    Prompt-learning methods (prefix, prompt, p-tuning) put virtual tokens in through the peft wrapper's forward,
    so they keep it.
    """
    peft_config = getattr(model, "active_peft_config", None)
    if peft_config is not None and peft_config.is_prompt_learning:
        return None
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    text_config = lm.config.get_text_config()
    if any(getattr(text_config, key, None) not in (None, 1.0) for key in LOGIT_TRANSFORMS):
        return None
    backbone, head = lm.base_model, lm.get_output_embeddings()
    if backbone is lm or head is None:
        return None
    return backbone, head


def model_inputs(batch: dict) -> dict:
    """The forward's inputs. A packed batch (data/packing.py) passes position ids and no attention mask: transformers
    then masks attention block-diagonally, one block per packed row (it looks for packing only without a cache)."""
    if "position_ids" in batch:
        return {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"], "use_cache": False}
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def answer_only_loss(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """Mean cross-entropy over the batch's learnt tokens, as the model's own loss (labels shifted by one)."""
    parts = backbone_and_head(model)
    if parts is None:
        return model(**model_inputs(batch), labels=batch["labels"]).loss
    backbone, head = parts
    hidden = backbone(**model_inputs(batch)).last_hidden_state
    targets = batch["labels"][:, 1:]  # position t predicts token t + 1
    learnt = targets != IGNORE_INDEX  # (B, T - 1)
    logits = head(hidden[:, :-1][learnt])  # (learnt tokens, vocab)
    return cross_entropy(logits.float(), targets[learnt])  # float: as transformers' ForCausalLMLoss upcasts

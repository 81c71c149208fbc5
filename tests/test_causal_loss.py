"""The causal LM's answer-only loss (modules/causal_loss.py): the model's own loss and gradients, with the LM head run
on the learnt tokens only; methods whose forward adds virtual tokens keep the model's forward."""

import pytest
import torch
from conftest import compose_config

from peftlab.config import validate
from peftlab.data.encoders import IGNORE_INDEX
from peftlab.models.loading import load_base_model
from peftlab.models.methods import apply_method
from peftlab.modules.causal_loss import answer_only_loss, backbone_and_head


def _model(tmp_path, model: str, peft: str):
    settings = validate(compose_config([f"model={model}", "dataset=sql", f"peft={peft}"], output_dir=tmp_path))
    base = load_base_model(settings.model, settings.shape, [])
    return apply_method(base, settings.peft, settings.model.head_modules, settings.shape)


def _batch(vocab: int) -> dict:
    """Two right-padded rows: a 5-token prompt then answer tokens; the second row 3 tokens shorter."""
    g = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, vocab, (2, 12), generator=g)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 9:] = 0
    labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
    labels[:, :5] = IGNORE_INDEX
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def _loss_and_grads(model, loss_fn, batch):
    model.zero_grad(set_to_none=True)
    loss = loss_fn(model, batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(("model", "peft"), [("smollm2_tiny", "lora"), ("gpt2_tiny", "lora"), ("bloom_tiny", "full")])
def test_the_answer_only_loss_and_gradients_are_the_models_own(tmp_path, model, peft):
    lm = _model(tmp_path, model, peft).eval()  # eval: no dropout, so the two passes see the same network
    assert backbone_and_head(lm) is not None
    batch = _batch(lm.config.vocab_size)
    own, own_grads = _loss_and_grads(lm, lambda m, b: m(**b).loss, batch)
    ours, our_grads = _loss_and_grads(lm, answer_only_loss, batch)
    assert torch.allclose(ours, own, atol=1e-6, rtol=1e-5)
    assert own_grads.keys() == our_grads.keys() and own_grads
    for name, grad in own_grads.items():
        assert torch.allclose(our_grads[name], grad, atol=1e-6, rtol=1e-4), name


def test_prefix_tuning_keeps_the_peft_forward(tmp_path):
    lm = _model(tmp_path, "smollm2_tiny", "prefix").eval()
    assert backbone_and_head(lm) is None  # its virtual tokens go in through PeftModel.forward
    batch = _batch(lm.config.vocab_size)
    assert torch.allclose(answer_only_loss(lm, batch), lm(**batch).loss)

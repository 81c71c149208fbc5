"""FastDropout (models/fast_dropout.py): nn.Dropout's distribution on CPU, seeded by torch's generator, swapped in
for every dropout of a LoRA model, and the run still learns with it."""

import pytest
import torch
from conftest import compose_config

from peftlab.config import validate
from peftlab.models.fast_dropout import FastDropout, use_fast_dropout
from peftlab.models.loading import load_base_model
from peftlab.models.methods import apply_method


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_masks_drop_p_of_the_elements_and_keep_the_mean(p):
    x = torch.ones(400, 1000)
    y = FastDropout(p).train()(x)
    dropped = (y == 0).float().mean().item()
    assert dropped == pytest.approx(p, abs=0.005)  # 400k draws: the std of the fraction is < 0.001
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / (1 - p)), rtol=1e-4)
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)


def test_torch_seed_fixes_the_masks_and_eval_is_the_identity():
    x = torch.randn(64, 32)
    layer = FastDropout(0.3).train()
    torch.manual_seed(7)
    first, second = layer(x), layer(x)
    torch.manual_seed(7)
    assert torch.equal(layer(x), first) and not torch.equal(first, second)
    assert layer.eval()(x) is x


def test_the_gradient_flows_through_the_kept_elements_only():
    x = torch.randn(50, 40, requires_grad=True)
    y = FastDropout(0.2).train()(x)
    y.sum().backward()
    kept = y.detach() != 0
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 1 / 0.8), rtol=1e-4)
    assert (x.grad[~kept] == 0).all()


def test_every_dropout_of_a_lora_model_is_swapped(tmp_path):
    settings = validate(compose_config(["peft=lora"], output_dir=tmp_path))
    base = load_base_model(settings.model, settings.shape, list(settings.dataset.labels))
    model = apply_method(base, settings.peft, settings.model.head_modules, settings.shape)
    before = sum(type(m) is torch.nn.Dropout for m in model.modules())
    assert before > 0 and use_fast_dropout(model) == before
    assert not any(type(m) is torch.nn.Dropout for m in model.modules())
    assert sum(isinstance(m, FastDropout) for m in model.modules()) == before


def test_the_flag_reaches_the_trained_model(tmp_path):
    """On by default (so every other training test runs with it, test_train's falling loss included); false keeps
    torch's nn.Dropout."""
    from peftlab.run import fit

    for flag, expected in (("true", {"FastDropout"}), ("false", {"Dropout"})):
        shrink = ["dataset.max_train_rows=64", "dataset.max_eval_rows=64", "trainer.max_epochs=1"]
        result = fit(compose_config([*shrink, f"hardware.fast_dropout={flag}"], output_dir=tmp_path / flag))
        assert {type(m).__name__ for m in result.module.model.modules() if "Dropout" in type(m).__name__} == expected


def test_the_backward_keeps_a_one_byte_mask():
    """What autograd keeps of a dropout for the backward: the bool mask (x * float_mask kept 4 bytes an element)."""
    x = torch.randn(50, 40, requires_grad=True)
    y = FastDropout(0.2).train()(x)
    (kept,) = y.grad_fn.saved_tensors
    assert kept.dtype == torch.bool and kept.shape == x.shape and torch.equal(kept, y.detach() != 0)


def _lora_step(tmp_path, model_name: str, checkpointing: int = 0):
    """One forward + backward of a LoRA twin on a fixed batch: (loss, every trainable gradient)."""
    from peftlab.models.loading import load_tokenizer, use_activation_checkpointing

    settings = validate(compose_config([f"model={model_name}", "peft=lora"], output_dir=tmp_path))
    tokenizer = load_tokenizer(settings.model)
    torch.manual_seed(0)
    labels = list(settings.dataset.labels)
    base = load_base_model(settings.model, settings.shape, labels, pad_token_id=tokenizer.pad_token_id)
    if checkpointing:
        use_activation_checkpointing(base, checkpointing, model_name)
    model = apply_method(base, settings.peft, settings.model.head_modules, settings.shape).train()
    use_fast_dropout(model)
    batch = tokenizer(["a fine film", "a dull and tiresome one, long too"] * 4, padding=True, return_tensors="pt")
    torch.manual_seed(1)  # the same masks in both runs
    loss = model(**batch, labels=torch.tensor([1, 0] * 4)).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.detach(), grads, [layer.gradient_checkpointing for layer in base.transformer.h]


@pytest.mark.parametrize("every", [1, 2])
def test_activation_checkpointing_recomputes_the_same_gradients(every, tmp_path):
    """model.activation_checkpointing=n: every n-th layer recomputed in the backward, its dropout masks redrawn from
    the RNG state torch keeps: the same loss, and every gradient within float32 rounding of keeping the activations
    (the recomputed graph sums in another order: measured 1.2e-7 at most on this twin)."""
    loss, grads, _ = _lora_step(tmp_path, "gpt2_tiny")
    loss_ckpt, grads_ckpt, recomputed = _lora_step(tmp_path, "gpt2_tiny", checkpointing=every)
    assert recomputed == [True, every == 1]  # the twin's 2 layers: both, or the first of every 2
    assert torch.equal(loss, loss_ckpt)
    assert all(torch.allclose(grads[n], grads_ckpt[n], rtol=1e-5, atol=1e-6) for n in grads)

"""Every model family (offline twins) x every PEFT method: trains, counts, freezes and round-trips as it should."""

import pytest
import torch
from conftest import compose_config, option_names
from torch import nn
from transformers.pytorch_utils import Conv1D

from peftlab.config import validate
from peftlab.errors import ConfigError
from peftlab.models.loading import load_base_model, load_tokenizer
from peftlab.models.methods import apply_method, load_kwargs_for, load_trained, save_trained
from peftlab.models.parallel_adapter import ffn_pairs
from peftlab.models.params import count_parameters

FAMILIES = ["minilm", "gpt2_tiny", "deberta_v3_tiny", "t5_tiny", "bloom_tiny"]
METHODS = [m for m in option_names("peft") if m != "none"]  # none trains nothing: evaluate.py only
LABELS = ["negative", "positive"]
# A learnable toy batch: the label is the presence of "great".
TEXTS = ["a great film", "a dull film", "great acting", "dull acting", "great story", "weak story", "great", "awful"]
TARGETS = torch.tensor([1, 0, 1, 0, 1, 0, 1, 0])
STEPS = 80
LR = {"full": 1e-3}  # others: 1e-2


def _settings(tmp_path, family, method):
    return validate(compose_config([f"model={family}", f"peft={method}"], output_dir=tmp_path))


def _base(settings, tokenizer):
    kwargs = load_kwargs_for(settings.peft, list(settings.model.head_modules))
    return load_base_model(settings.model, "classify", LABELS, tokenizer.pad_token_id, **kwargs)


def _in_out(module) -> tuple[int, int]:
    if isinstance(module, Conv1D):
        return module.weight.shape  # (in, out)
    return module.in_features, module.out_features


def _targeted(name: str, targets) -> bool:
    return any(name == t or name.endswith("." + t) for t in targets)


def _head_params(model, head_modules) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if any(n.startswith(h + ".") for h in head_modules))


def expected_trainable(base: nn.Module, settings) -> int:
    """Independent count, from the base's shapes and the method's formula."""
    p, head_modules = settings.peft, list(settings.model.head_modules)
    head = _head_params(base, head_modules)
    linears = {
        n: m
        for n, m in base.named_modules()
        if (isinstance(m, (nn.Linear, Conv1D)) or hasattr(m, "in_features"))
        and not _targeted(n, head_modules)
        and not any(n.startswith(h + ".") or n == h for h in head_modules)
    }
    if p.method in ("lora", "qlora"):  # r * (in + out) per targeted Linear
        return head + sum(p.r * sum(_in_out(m)) for n, m in linears.items() if _targeted(n, p.target_modules))
    if p.method == "ia3":  # one vector: input width for FFN targets, output width otherwise
        return head + sum(
            _in_out(m)[0] if _targeted(n, p.feedforward_modules) else _in_out(m)[1]
            for n, m in linears.items()
            if _targeted(n, p.target_modules)
        )
    if p.method == "prefix":  # layers * 2 (key, value) * tokens * hidden
        c = base.config
        return head + c.num_hidden_layers * 2 * p.num_virtual_tokens * c.hidden_size
    if p.method == "adapters":  # per block: 2 * h * (h / rf) + (h / rf) + h
        total = 0
        for _, _, out in ffn_pairs(base, p.ffn_input, p.ffn_output):
            h = _in_out(out)[1]
            b = h // p.reduction_factor
            total += 2 * h * b + b + h
        return head + total
    if p.method == "full":
        return count_parameters(base)[1]
    return head  # head_only


def _unsupported(tmp_path, family, method) -> str | None:
    try:
        _settings(tmp_path, family, method)
    except ConfigError as err:
        return str(err)
    return None


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("family", FAMILIES)
def test_family_times_method(family, method, tmp_path):
    reason = _unsupported(tmp_path, family, method)
    if reason is not None:
        assert f"peft={method} with model={family}: not supported (" in reason
        return
    settings = _settings(tmp_path, family, method)
    tokenizer = load_tokenizer(settings.model)
    torch.manual_seed(0)
    base = _base(settings, tokenizer)
    expected = expected_trainable(base, settings)
    originals = {id(p): (p, p.detach().clone()) for p in base.parameters()}
    model = apply_method(base, settings.peft, list(settings.model.head_modules), "classify")
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert count_parameters(model)[0] == expected

    batch = dict(tokenizer(TEXTS, padding=True, return_tensors="pt"))
    model.eval()  # no dropout: the loss curve of the full-batch steps is then deterministic
    optimizer = torch.optim.AdamW(trainable, lr=LR.get(method, 1e-2))
    losses = []
    for _ in range(STEPS):
        loss = model(**batch, labels=TARGETS).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert min(losses[-5:]) < 0.9 * losses[0], losses

    if method != "full":  # every weight the method froze is bit-identical (QLoRA: the packed 4-bit data too)
        frozen = [(p, before) for p, before in originals.values() if not p.requires_grad]
        assert frozen and all(torch.equal(p.detach(), before) for p, before in frozen)

    save_trained(model, settings.peft, list(settings.model.head_modules), tmp_path / "adapter")
    reloaded = load_trained(_base(settings, tokenizer), settings.peft, tmp_path / "adapter").eval()
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, model(**batch).logits)

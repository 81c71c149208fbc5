"""The upstream workarounds of peftlab/compat.py, each checked against what it protects on the installed versions."""

import subprocess
import sys

import pytest
import torch
from conftest import REPO, compose_config

from peftlab.config import validate
from peftlab.models.loading import load_base_model, load_tokenizer
from peftlab.models.methods import apply_method

GENERATORS = [("gpt2_tiny", "causal"), ("bloom_tiny", "causal"), ("t5_tiny", "seq2seq")]


def _model(tmp_path, family, method, shape):
    settings = validate(compose_config([f"model={family}", f"peft={method}", "dataset=sql"], output_dir=tmp_path))
    tokenizer = load_tokenizer(settings.model)
    base = load_base_model(settings.model, shape, [], tokenizer.pad_token_id)
    return apply_method(base, settings.peft, [], shape).eval(), tokenizer


def _perturb_trainables(model):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.5)


@pytest.mark.parametrize("method", ["prefix", "lora"])
@pytest.mark.parametrize(("family", "shape"), GENERATORS)
def test_cached_generation_equals_step_by_step_forward(family, shape, method, tmp_path):
    """Greedy generate (with the KV cache, where prefix tuning injects its prefix) = argmax of full forwards.

    Under transformers 5.24 + peft 0.21.2 without compat.expose_past_key_values, generate dropped the prefix.
    """
    model, tokenizer = _model(tmp_path, family, method, shape)
    _perturb_trainables(model)  # a trained-looking adapter, so that ignoring it changes the answer
    enc = tokenizer(["select the name of player seven"], return_tensors="pt", return_token_type_ids=False)
    steps = 4
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=steps, do_sample=False)
        if shape == "causal":
            ids = enc["input_ids"]
            for _ in range(steps):
                nxt = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, -1].argmax(-1, keepdim=True)
                ids = torch.cat([ids, nxt], dim=1)
            expected = ids
        else:
            start = model.get_base_model().config.decoder_start_token_id
            ids = torch.tensor([[start]])
            for _ in range(steps):
                logits = model(**enc, decoder_input_ids=ids).logits[:, -1]
                ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
            expected = ids
    assert out.tolist() == expected[:, : out.shape[1]].tolist()  # generate stops early at EOS


@pytest.mark.parametrize("family", ["minilm", "gpt2_tiny", "bloom_tiny"])
def test_prefix_tuning_classifies_and_its_prefix_gets_gradients(family, tmp_path):
    settings = validate(compose_config([f"model={family}", "peft=prefix"], output_dir=tmp_path))
    tokenizer = load_tokenizer(settings.model)
    head = list(settings.model.head_modules)
    base = load_base_model(settings.model, "classify", ["no", "yes"], tokenizer.pad_token_id)
    model = apply_method(base, settings.peft, head, "classify")
    enc = tokenizer(["a great film", "dull"], padding=True, return_tensors="pt", return_token_type_ids=False)
    model(**enc, labels=torch.tensor([1, 0])).loss.backward()
    prefix = [p for n, p in model.named_parameters() if "prompt_encoder" in n]
    assert prefix and all(p.grad is not None and p.grad.abs().sum() > 0 for p in prefix)


def test_a_lora_run_never_imports_bitsandbytes_and_qlora_after_it_still_quantises(tmp_path):
    """One process, as a `-m peft=lora,qlora` sweep: LoRA while hidden, then QLoRA reveals it (cached checks reset)."""
    code = f"""
import sys
from peftlab.compat import hide_bitsandbytes
hide_bitsandbytes()
sys.path.insert(0, {str(REPO / "tests")!r})
from conftest import compose_config
from peftlab.config import validate
from peftlab.models.loading import load_base_model, load_tokenizer
from peftlab.models.methods import apply_method, load_kwargs_for
for method in ("lora", "qlora"):
    s = validate(compose_config(["peft=" + method], output_dir={str(tmp_path)!r}))
    tok = load_tokenizer(s.model)
    base = load_base_model(s.model, "classify", ["a", "b"], tok.pad_token_id, **load_kwargs_for(s.peft, ["classifier"]))
    model = apply_method(base, s.peft, ["classifier"], "classify")
    kinds = {{type(m).__name__ for m in model.modules()}}
    print(method, sys.modules.get("bitsandbytes") is not None, "Linear4bit" in kinds)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-3:-1] == ["lora False False", "qlora True True"]
    assert "gemm_4bit_forward" not in out.stderr


LISTING = """
import hashlib, json, sys
from peftlab.compat import list_transformers_models_once
if sys.argv[1] == "once":
    list_transformers_models_once()
import transformers, transformers.models
from transformers.utils.import_utils import create_import_structure_from_path as listing
models = transformers.models
names = [sorted(dir(transformers)), sorted(dir(models)), sorted(models._class_to_module.items())]
print(listing.cache_info().misses, hashlib.sha256(json.dumps(names).encode()).hexdigest())
"""


def test_transformers_lists_its_model_folders_once_and_exports_the_same_names(tmp_path):
    """Without the unbounded cache both walks of models/ miss every folder (the second lists them all again)."""
    walks = {}
    for mode in ("twice", "once"):
        out = subprocess.run([sys.executable, "-c", LISTING, mode], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        walks[mode] = out.stdout.split()
    folders = int(walks["once"][0])
    assert folders > 100 and int(walks["twice"][0]) >= 2 * folders - 2, walks
    assert walks["once"][1] == walks["twice"][1], "the same names, from the same modules"

"""PEFT methods on the packaged MiniLM: exactly the parameters each method implies are trainable; peft checks its
own fields before anything loads; the training hooks (LoRA+, AdaLoRA) do what the methods need."""

import functools
import subprocess
import sys

import pytest
import torch
from conftest import REPO, compose_config

from peftlab.config import validate
from peftlab.errors import ConfigError
from peftlab.models.loading import load_base_model
from peftlab.models.method_hooks import after_optimizer_step, build_optimizer
from peftlab.models.methods import apply_method, linear_module_names
from peftlab.models.params import count_parameters


def _settings(tmp_path, overrides):
    return validate(compose_config(overrides, output_dir=tmp_path))


def _fresh(settings):
    return load_base_model(settings.model, settings.shape, list(settings.dataset.labels))


def _head_params(model) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if n.startswith("classifier."))


@pytest.mark.parametrize(("r", "targets"), [(8, ["query", "value"]), (4, ["query", "key", "value", "dense"])])
def test_lora_trainable_count_is_r_times_in_plus_out(tmp_path, r, targets):
    settings = _settings(tmp_path, [f"peft.r={r}", f"peft.target_modules=[{','.join(targets)}]"])
    base = _fresh(settings)
    expected_lora = sum(
        r * (m.in_features + m.out_features)
        for name, m in base.named_modules()
        if isinstance(m, torch.nn.Linear) and name.rsplit(".", 1)[-1] in targets
    )
    head = _head_params(base)
    model = apply_method(base, settings.peft, settings.model.head_modules, "classify")
    trainable, _ = count_parameters(model)
    assert trainable == expected_lora + head
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all("lora_" in n or "modules_to_save" in n for n in names)


def test_full_trains_everything_and_head_only_just_the_head(tmp_path):
    full = apply_method(_fresh(s := _settings(tmp_path, ["peft=full"])), s.peft, s.model.head_modules, "classify")
    trainable, total = count_parameters(full)
    assert trainable == total > 20_000_000
    s = _settings(tmp_path, ["peft=head_only"])
    base = _fresh(s)
    head = _head_params(base)
    model = apply_method(base, s.peft, s.model.head_modules, "classify")
    assert count_parameters(model)[0] == head == 384 * 2 + 2


def test_unknown_target_module_lists_linear_names(tmp_path):
    settings = _settings(tmp_path, ["peft.target_modules=[q_proj,v_proj]"])
    base = _fresh(settings)
    with pytest.raises(ConfigError) as info:
        apply_method(base, settings.peft, settings.model.head_modules, "classify")
    message = str(info.value)
    assert message.startswith("peft.target_modules=['q_proj', 'v_proj']: not found in the model")
    for name in ("query", "key", "value", "dense", "classifier"):
        assert name in message
    assert linear_module_names(base) == ["classifier", "dense", "key", "query", "value"]


def test_head_only_with_unknown_head_names_the_key(tmp_path):
    settings = _settings(tmp_path, ["peft=head_only", "model.head_modules=[score]"])
    with pytest.raises(ConfigError, match=r"model.head_modules=\['score'\]: no such module"):
        apply_method(_fresh(settings), settings.peft, settings.model.head_modules, "classify")


def test_qlora_keeps_the_head_out_of_4bit_and_loads_onto_the_ranks_own_gpu(tmp_path, monkeypatch):
    from peftlab.models.methods import load_kwargs_for

    settings = _settings(tmp_path, ["peft=qlora"])
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    on_rank_3 = load_kwargs_for(settings.peft, settings.model.head_modules, torch.device("cuda", 3))
    assert on_rank_3["device_map"] == {"": torch.device("cuda", 3)}  # never "auto" (model parallelism), never GPU 0
    assert on_rank_3["quantization_config"].bnb_4bit_compute_dtype == torch.bfloat16  # compute_dtype=auto on a GPU
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    on_a_v100 = load_kwargs_for(settings.peft, settings.model.head_modules, torch.device("cuda", 0))
    assert on_a_v100["quantization_config"].bnb_4bit_compute_dtype == torch.float32  # emulated bf16 is not taken
    kwargs = load_kwargs_for(settings.peft, settings.model.head_modules, torch.device("cpu"))
    assert "device_map" not in kwargs
    quant = kwargs["quantization_config"]
    assert quant.bnb_4bit_compute_dtype == torch.float32
    assert quant.load_in_4bit and quant.bnb_4bit_quant_type == "nf4" and quant.bnb_4bit_use_double_quant
    assert quant.llm_int8_skip_modules == ["classifier"]
    model = load_base_model(settings.model, "classify", ["a", "b"], **kwargs)
    assert type(model.bert.encoder.layer[0].attention.self.query).__name__ == "Linear4bit"
    assert type(model.classifier) is torch.nn.Linear


def test_a_twin_never_overwrites_a_folder_it_did_not_write(tmp_path):
    from peftlab.offline.twins import materialise_twin

    exported = tmp_path / "exported"  # e.g. `python -m peftlab.export ... out=exported`, passed as name_or_path
    exported.mkdir()
    (exported / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"not a tiny twin; not overwriting it .*model\.init=null"):
        materialise_twin(str(exported), "gpt2", {"n_layer": 1}, "AutoModelForSequenceClassification")
    assert (exported / "config.json").read_text() == "{}"
    twin = materialise_twin(str(tmp_path / "twin"), "gpt2", {"n_layer": 1, "n_embd": 32, "n_head": 2},
                            "AutoModelForSequenceClassification")  # fmt: skip
    assert (twin / "config.json").is_file()


def test_peft_checks_its_own_fields_and_names_the_key(tmp_path):
    """peft's config class is instantiated by validate(): before any weights or data load."""
    with pytest.raises(ConfigError, match=r"^peft\.rnak: unknown key; allowed keys are .*\blora_alpha\b.*\br\b"):
        _settings(tmp_path, ["+peft.rnak=4"])
    with pytest.raises(ConfigError) as info:
        _settings(tmp_path, ["+peft.layers_pattern=layer"])  # peft: needs layers_to_transform too
    assert str(info.value).startswith("peft.layers_pattern='layer': When `layers_pattern` is specified")
    with pytest.raises(ConfigError, match=r"^peft\.tfinal=10: The supplied schedule values don't allow"):
        _settings(tmp_path, ["peft=adalora", "peft.tinit=10", "peft.tfinal=10", "peft.total_step=15"])
    with pytest.raises(ConfigError, match=r"^peft\._target_=peft\.LoraConfg: not a peft config class"):
        _settings(tmp_path, ["peft._target_=peft.LoraConfg"])


def test_our_checks_of_common_fields_run_before_torch_is_imported():
    """peft 0.21.2 takes r=0 or a dropout of 2.0 without a word: ours refuse them in the torch-free validation."""
    code = """
import sys
sys.path.insert(0, "tests")
from conftest import compose_config
from peftlab.config import validate
from peftlab.errors import ConfigError
for overrides in (["peft.r=0"], ["peft=vera", "peft.vera_dropout=2.0"], ["peft=dora", "peft.r=-1"], ["peft=full"]):
    try:
        validate(compose_config(overrides))
        print("valid", "torch" in sys.modules)
    except ConfigError as err:
        print(err, "torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.stdout.splitlines() == [
        "peft.r=0: LoRA rank must be an integer >= 1 False",
        "peft.vera_dropout=2.0: must be in [0, 1) False",
        "peft.r=-1: LoRA rank must be an integer >= 1 False",
        "valid False",  # peftlab's own method: no peft config to instantiate
    ], out.stderr[-2000:]


def test_a_refusal_lives_in_the_methods_record(tmp_path):
    """Validation reads the record: a family refusal added to it refuses before loading, with its reason."""
    with pytest.raises(ConfigError, match=r"^peft=lora with model=gpt2_tiny: not supported \(because\)$"):
        _settings(tmp_path, ["model=gpt2_tiny", "+peft.capabilities.refused_families.gpt2=because"])
    with pytest.raises(ConfigError, match=r"^peft=prompt_tuning with dataset=commonsense_qa on model=minilm"):
        _settings(tmp_path, ["peft=prompt_tuning", "dataset=commonsense_qa"])  # no peft task type for choices


def test_loraplus_trains_b_at_ratio_times_the_learning_rate(tmp_path):
    settings = _settings(tmp_path, ["peft=loraplus"])
    model = apply_method(_fresh(settings), settings.peft, settings.model.head_modules, "classify")
    trainable = [p for p in model.parameters() if p.requires_grad]
    factory = functools.partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.01, betas=(0.9, 0.999))
    optimizer = build_optimizer(model, factory, [{"params": trainable}], total_steps=10)
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert sorted(lr_of) == sorted(id(p) for p in trainable)  # every trainable weight, once
    ratio = settings.peft.loraplus_lr_ratio
    for name, param in model.named_parameters():
        if "lora_A" in name:
            assert lr_of[id(param)] == 1e-3, name
        if "lora_B" in name:
            assert lr_of[id(param)] == pytest.approx(ratio * 1e-3), name
    assert type(optimizer) is torch.optim.AdamW and optimizer.defaults["betas"] == (0.9, 0.999)


def test_adalora_learns_the_planned_steps_and_reallocates_ranks(tmp_path):
    settings = _settings(tmp_path, ["peft=adalora", "peft.init_r=4", "peft.target_r=2"])
    assert settings.peft.total_step is None  # the YAML leaves it to the run
    model = apply_method(_fresh(settings), settings.peft, settings.model.head_modules, "classify")
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(model, functools.partial(torch.optim.AdamW, lr=1e-2), [{"params": trainable}], 6)
    assert model.peft_config["default"].total_step == 6
    batch = {"input_ids": torch.tensor([[101, 2307, 2143, 102], [101, 10634, 2143, 102]])}
    for step in range(6):
        loss = model(**batch, labels=torch.tensor([1, 0])).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        after_optimizer_step(model, step)
    ranks = model.peft_config["default"].rank_pattern  # the budget moved: 4 ranks per layer shrink towards 2
    assert ranks and 2 * len(ranks) <= sum(sum(kept) for kept in ranks.values()) < 4 * len(ranks)


def test_building_a_twin_leaves_the_runs_random_draws_alone(tmp_path):
    """A run that builds the twin (the first with a fresh cache) draws the same LoRA and head inits as a run with the
    same seed that finds it built: the twin's seeded weights come from a forked generator."""
    from peftlab.offline.twins import materialise_twin

    sizes = {"n_layer": 1, "n_embd": 32, "n_head": 2}
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    twin = materialise_twin(str(tmp_path / "twin"), "gpt2", sizes, "AutoModelForSequenceClassification")
    assert torch.equal(torch.rand(4), expected)
    again = materialise_twin(str(tmp_path / "again"), "gpt2", sizes, "AutoModelForSequenceClassification")
    from safetensors.torch import load_file

    first, second = load_file(twin / "model.safetensors"), load_file(again / "model.safetensors")
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)  # still seeded

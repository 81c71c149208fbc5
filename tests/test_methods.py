"""PEFT methods on the packaged MiniLM: exactly the parameters each method implies are trainable."""

import pytest
import torch
from conftest import compose_config

from peftlab.config import validate
from peftlab.errors import ConfigError
from peftlab.models.loading import load_base_model
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


def test_qlora_keeps_the_head_out_of_4bit_and_never_sets_a_device_map(tmp_path):
    from peftlab.models.methods import load_kwargs_for

    settings = _settings(tmp_path, ["peft=qlora"])
    kwargs = load_kwargs_for(settings.peft, settings.model.head_modules)
    assert "device_map" not in kwargs  # device_map="auto" would turn DDP into naive model parallelism
    quant = kwargs["quantization_config"]
    assert quant.load_in_4bit and quant.bnb_4bit_quant_type == "nf4" and quant.bnb_4bit_use_double_quant
    assert quant.llm_int8_skip_modules == ["classifier"]
    model = load_base_model(settings.model, "classify", ["a", "b"], **kwargs)
    assert type(model.bert.encoder.layer[0].attention.self.query).__name__ == "Linear4bit"
    assert type(model.classifier) is torch.nn.Linear


def test_a_twin_never_overwrites_a_folder_it_did_not_write(tmp_path):
    from peftlab.models.tiny import materialise_twin

    exported = tmp_path / "exported"  # e.g. `python -m peftlab.export ... out=exported`, passed as name_or_path
    exported.mkdir()
    (exported / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"not a tiny twin; not overwriting it .*model\.init=pretrained"):
        materialise_twin(str(exported), "gpt2", {"n_layer": 1}, "AutoModelForSequenceClassification")
    assert (exported / "config.json").read_text() == "{}"
    twin = materialise_twin(str(tmp_path / "twin"), "gpt2", {"n_layer": 1, "n_embd": 32, "n_head": 2},
                            "AutoModelForSequenceClassification")  # fmt: skip
    assert (twin / "config.json").is_file()

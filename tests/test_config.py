"""Every shipped config option composes and validates; bad values fail with a message naming the key."""

import pytest
from conftest import CONF, compose_config, option_names
from hydra.errors import HydraException
from omegaconf import OmegaConf

from peftlab.cli import composition_error
from peftlab.config import validate
from peftlab.config.method_schema import OWN_SCHEMAS, MethodSettings
from peftlab.config.store import SCHEMAS
from peftlab.errors import ConfigError

# conf/hydra/ holds options of Hydra's own groups (hydra/launcher=sagemaker), not groups of a run; __pycache__ (written
# wherever bytecode may be, conf/ being a package) is no group to Hydra either.
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in ("hydra", "__pycache__"))


def composed_and_validated(overrides: list[str], tmp_path):
    """As a command line does it: Hydra composes (its refusal read as the CLI's one line), then validate()."""
    try:
        cfg = compose_config(overrides, output_dir=tmp_path)
    except HydraException as err:
        raise ConfigError(composition_error(err)) from err
    return validate(cfg)


def test_every_group_has_options():
    assert {"model", "peft", "dataset", "hardware", "trainer", "logger", "callbacks", "paths", "experiment"} <= set(
        GROUPS
    )
    for group in GROUPS:
        assert option_names(group), f"conf/{group} has no options"


# Groups that another option or config selects in its defaults list, not config.yaml (hardware=g4dn_spot selects
# sagemaker=g4dn_spot, launch_sagemaker.yaml cost=sagemaker): a command line adds one with +group=option.
SELECTED_BY_OPTIONS = ("sagemaker", "cost")


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in option_names(g)])
def test_every_option_composes_and_validates(group, option, tmp_path):
    # Generation datasets need a generative model: check them on T5's offline twin.
    extra = ["model=t5_tiny"] if group == "dataset" and option in GENERATION_DATASETS else []
    extra += DECODER_COMPANIONS.get((group, option), [])
    plus = "+" if group in SELECTED_BY_OPTIONS else ""
    cfg = compose_config([f"{plus}{group}={option}", *extra], output_dir=tmp_path)
    schema = SCHEMAS.get(f"peft/{option}" if group == "peft" else group)
    assert schema is None or OmegaConf.get_type(cfg[group]) is schema  # the option starts from its group's schema
    if (group, option) in REFUSED_OPTIONS:  # kept as the option users type; validation says why it cannot run yet
        with pytest.raises(ConfigError, match=REFUSED_OPTIONS[group, option]):
            validate(cfg)
        return
    settings = validate(cfg)
    assert isinstance(settings.peft, MethodSettings) and settings.peft.method == cfg.peft.method


GENERATION_DATASETS = ("sql", "instruct", "detox", "race_distractors")
# A preference dataset and a preference objective need each other, and a decoder; conversations need a decoder
DECODER_COMPANIONS = {
    ("dataset", "chat"): ["model=smollm2_tiny"],
    ("dataset", "detox_pref"): ["model=gpt2_tiny", "objective=dpo"],
    **{("objective", name): ["model=gpt2_tiny", "dataset=detox_pref"] for name in ("dpo", "ipo", "orpo")},
}
REFUSED_OPTIONS: dict[tuple[str, str], str] = {}  # (group, option) -> the refusal, for options kept but not runnable


@pytest.mark.parametrize(
    ("model", "dataset", "shape"),
    [
        ("minilm", "commonsense_qa", "choose"),
        ("t5_tiny", "commonsense_qa", "seq2seq"),
        ("gpt2_tiny", "race", "causal"),
        ("t5_tiny", "sql", "seq2seq"),
        ("bloom_tiny", "detox", "causal"),
        ("gpt2_tiny", "sst2", "classify"),
    ],
)
def test_task_and_architecture_pick_the_shape(model, dataset, shape, tmp_path):
    assert validate(compose_config([f"model={model}", f"dataset={dataset}"], output_dir=tmp_path)).shape == shape


def test_generation_on_an_encoder_is_refused_naming_both(tmp_path):
    with pytest.raises(ConfigError, match=r"dataset=sql \(generation\) with model=minilm \(encoder\): not possible"):
        validate(compose_config(["dataset=sql"], output_dir=tmp_path))


def test_text_metric_on_a_classifier_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="'rougeL' is not available for classification"):
        validate(compose_config(["dataset=sst2", "dataset.metrics=[accuracy,rougeL]"], output_dir=tmp_path))


def test_every_peft_option_is_named_after_its_file(tmp_path):
    """metrics.json's `method` and the sweep report's rows are the peft= option's name (peft.method)."""
    for option in option_names("peft"):
        cfg = compose_config([f"peft={option}"], output_dir=tmp_path)
        assert cfg.peft.method == option


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("peft.r=0", "peft.r=0: LoRA rank must be an integer >= 1"),
        ("peft.lora_dropout=1.5", "peft.lora_dropout=1.5"),
        ("trainer.max_epochs=-1", "trainer.max_epochs=-1: must be >= 1"),
        ("trainer.max_epochs=abc", "trainer.max_epochs: Value 'abc'"),
        ("dataset.batch_size=0", "dataset.batch_size=0: must be > 0"),
        ("dataset.metric=auc", "dataset.metric='auc': must be one of metrics=['accuracy', 'f1']"),
        ("dataset.labels=[only]", "dataset.labels=['only']"),
        ("+peft.rank=4", "peft.rank: unknown key; allowed keys are"),
        # Refused by the groups' schemas while Hydra composes (config/store.py), or by validate() for a `+` key
        (
            "model.nme=x",
            "model.nme: unknown key; allowed keys are activation_checkpointing, architecture, config_overrides,",
        ),
        (
            "+model.foo=1",
            "model.foo: unknown key; allowed keys are activation_checkpointing, architecture, config_overrides,",
        ),
        ("dataset.batch_size=abc", "dataset.batch_size: Value 'abc' of type 'str' could not be converted to Integer"),
        ("paths.outptu_dir=x", "paths.outptu_dir: unknown key; allowed keys are cache_dir, checkpoint_dir, output_dir"),
        ("hardware.num_nodes=x", "hardware.num_nodes: Value 'x' of type 'str' could not be converted to Integer"),
        ("optim.warmup_ratio=soon", "optim.warmup_ratio: Value 'soon' of type 'str' could not be converted to Float"),
        ("peft._target_=peft.LoraConfg", "peft._target_=peft.LoraConfg: not a peft config class"),
        ("hardware.precision=fp8", "hardware.precision='fp8': allowed values are"),
        ("optim.optimizer.lr=0", "optim.optimizer.lr=0"),
        ("seed=abc", "seed='abc': must be an integer"),
        ("model.name_or_path=${peftlab.packaged_model:no_such_pkg}", "package 'no_such_pkg' is not installed"),
    ],
)
def test_bad_values_name_the_key(override, expected, tmp_path):
    with pytest.raises(ConfigError) as info:
        composed_and_validated([override], tmp_path)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "schema"),
    [([f"{group}.nope=1"], group) for group in ("model", "dataset", "hardware", "optim")]
    + [([f"peft={method}", "peft.nope=1"], f"peft/{method}") for method in OWN_SCHEMAS],
)
def test_groups_with_a_schema_refuse_unknown_keys_while_composing(overrides, schema, tmp_path):
    with pytest.raises(HydraException) as info:  # Hydra refuses it: no code of ours ran
        compose_config(overrides, output_dir=tmp_path)
    allowed = ", ".join(sorted(SCHEMAS[schema].__dataclass_fields__))
    assert composition_error(info.value) == f"{overrides[-1].split('=')[0]}: unknown key; allowed keys are {allowed}"


def test_missing_data_dir_names_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    cfg = compose_config(["dataset=sst2", f"dataset.data_dir={missing}"], output_dir=tmp_path)
    with pytest.raises(ConfigError, match=f"dataset.data_dir='{missing}': folder does not exist"):
        validate(cfg)


def test_one_validation_leaves_nothing_to_the_next(tmp_path):
    """The schemas' nodes are built once a process (validate._schema_node): each validation starts from them clean."""
    default = validate(compose_config([], output_dir=tmp_path))
    changed = validate(compose_config(["dataset.batch_size=3", "+trainer.benchmark=true"], output_dir=tmp_path))
    again = validate(compose_config([], output_dir=tmp_path))
    assert changed.dataset.batch_size == 3 and again.dataset.batch_size == default.dataset.batch_size != 3
    assert again == default


def test_open_trainer_section_passes_extra_lightning_arguments(tmp_path):
    cfg = compose_config(["+trainer.benchmark=true"], output_dir=tmp_path)
    validate(cfg)  # unknown-to-us Trainer kwargs pass through; Lightning validates them


def test_hardware_gpu_without_cuda_suggests_cpu(tmp_path):
    import torch

    from peftlab.trainer.hardware import check_hardware

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    settings = validate(compose_config(["hardware=gpu"], output_dir=tmp_path))
    with pytest.raises(ConfigError, match=r"no CUDA device .* use hardware=cpu"):
        check_hardware(settings.hardware)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["dataset=commonsense_qa", "peft=prefix"], "peft=prefix with dataset=commonsense_qa on model=minilm"),
        (["model=gpt2_tiny", "dataset=sql", "peft=head_only"], "there is no new head to train"),
    ],
)
def test_method_that_cannot_fit_the_task_shape_is_refused(overrides, expected, tmp_path):
    with pytest.raises(ConfigError, match=expected):
        validate(compose_config(overrides, output_dir=tmp_path))


def test_a_family_refusal_can_name_one_task_shape(tmp_path):
    with pytest.raises(ConfigError, match="peft=prefix with model=t5_tiny: not supported"):
        validate(compose_config(["model=t5_tiny", "peft=prefix"], output_dir=tmp_path))  # classification head
    settings = validate(compose_config(["model=t5_tiny", "peft=prefix", "dataset=sql"], output_dir=tmp_path))
    assert settings.shape == "seq2seq" and settings.peft.method == "prefix"  # generation: peft's prefix works


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["peft=qlora", "hardware=deepspeed"], r"^peft=qlora with hardware.strategy=deepspeed_stage_2: not supported"),
        (["model=t5_tiny", "hardware=gpu", "hardware.precision=16-mixed"],
         r"^hardware.precision=16-mixed: model=t5_tiny overflows in float16; use bf16-mixed"),
    ],
)  # fmt: skip
def test_hardware_that_would_train_wrong_is_refused_before_work(overrides, expected, tmp_path):
    with pytest.raises(ConfigError, match=expected):
        validate(compose_config(overrides, output_dir=tmp_path))


@pytest.mark.parametrize(("bf16", "model", "expected"), [
    (True, "t5_tiny", "bf16-mixed"), (False, "t5_tiny", "32-true"), (False, "gpt2_tiny", "16-mixed"),
])  # fmt: skip
def test_precision_auto_follows_the_gpu_and_the_family(bf16, model, expected, tmp_path, monkeypatch):
    """A T4 or V100 has no bfloat16 (emulated only): T5 then trains in fp32, not in overflowing float16."""
    import torch

    from peftlab.trainer.hardware import resolve_precision

    settings = validate(compose_config([f"model={model}", "hardware=p3"], output_dir=tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16 or including_emulation)
    assert resolve_precision(settings.hardware, settings.model) == expected


def test_the_strategy_table_agrees_with_lightnings_registry():
    """config/schema.py keeps its own small table because validation runs before torch is imported, and where torch
    is not installed (the SageMaker launch); Lightning's StrategyRegistry is the reference it must match."""
    from pytorch_lightning.strategies import DeepSpeedStrategy, FSDPStrategy, StrategyRegistry

    from peftlab.config.schema import STRATEGIES

    for name, gpus_only in STRATEGIES.items():
        if name == "auto":
            continue
        assert gpus_only == issubclass(StrategyRegistry[name]["strategy"], DeepSpeedStrategy | FSDPStrategy), name


DEVICES = [1, 2, 8, 0, -1, -2, "auto", [0], [0, 1], [1, 3], [], [0, 0], [-1], [True], True, 1.5, "x"]


@pytest.mark.parametrize("accelerator", ["cpu", "gpu"])
def test_the_devices_rule_agrees_with_lightnings_parsers(accelerator, monkeypatch):
    """config/schema.py's _devices_ok (torch-free, for the same reason) accepts what Lightning's accelerator parses
    on a machine with 8 GPUs, and nothing Lightning refuses (`0` and `[]`: its connector's own refusal)."""
    import lightning_fabric.accelerators.cuda as cuda
    from lightning_fabric.accelerators import CPUAccelerator, CUDAAccelerator
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    from peftlab.config.schema import _devices_ok

    monkeypatch.setattr(cuda, "num_cuda_devices", lambda: 8)
    kind = CPUAccelerator if accelerator == "cpu" else CUDAAccelerator
    for devices in DEVICES:
        if isinstance(devices, bool):  # stricter on purpose: Lightning's CPU parser takes `true` as 1 process
            assert not _devices_ok(devices, accelerator)
            continue
        try:
            parsed = kind.parse_devices(kind.auto_device_count() if devices == "auto" else devices)
            lightning_ok = devices not in (0, []) and bool(kind.get_parallel_devices(parsed))
        except (MisconfigurationException, TypeError, ValueError):
            lightning_ok = False
        assert _devices_ok(devices, accelerator) == lightning_ok, devices


def test_hydras_repository_copies_share_the_store_and_compositions_stay_independent(tmp_path):
    """config/store.share_config_store: a copy of Hydra's config repository (one per group lookup) holds the same
    ConfigStore, and what one composition sets never reaches the stored schema or the next composition."""
    import copy

    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    assert copy.deepcopy({"store": store})["store"] is store
    stored = OmegaConf.to_container(store.load("schema/dataset.yaml").node)
    assert compose_config(["dataset.batch_size=3", "+dataset.extra=1"], tmp_path).dataset.batch_size == 3
    again = compose_config([], tmp_path).dataset
    assert again.batch_size == stored["batch_size"] == 32 and "extra" not in again
    assert OmegaConf.to_container(store.load("schema/dataset.yaml").node) == stored

"""validate(cfg): the composed config as typed RunSettings, and the rules between groups, each failing in one line.

Hydra has typed and closed every group with a schema while composing (config/store.py); here each group becomes its
dataclass (whose __post_init__ relates its own fields) and what no single group can say is checked: the task against
the architecture, the method's capabilities against the model and the hardware, the precision against the family.
"""

import functools
from dataclasses import fields
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from peftlab.config.checks import SettingError, schema_error
from peftlab.config.objective_schema import PREFERENCE_OBJECTIVES, REFERENCE_OBJECTIVES, ObjectiveSettings
from peftlab.config.peft_schema import PeftSettings, schema_for, split_peft_values
from peftlab.config.schema import (
    DatasetSettings,
    HardwareSettings,
    ModelSettings,
    OptimSettings,
    RunSettings,
    TrainerSettings,
)
from peftlab.config.tasks import CAUSAL_SHAPES, PACKABLE_SHAPES, metric_names_for, task_shape
from peftlab.errors import ConfigError, PeftlabError

GROUPS: dict[str, type] = {
    "model": ModelSettings,
    "dataset": DatasetSettings,
    "hardware": HardwareSettings,
    "optim": OptimSettings,
}
# The trainer group is open (any Lightning Trainer argument, `+trainer.<arg>=`): only the keys we check are typed.
TRAINER_KEYS = {f.name for f in fields(TrainerSettings)}


def validate(cfg: DictConfig, check_files: bool = True, check_with_peft: bool = True) -> RunSettings:
    """Type every group we own and check the rules between them; raise ConfigError("<full.key>=<value>: <what is
    allowed>") on the first problem.

    check_files=False skips checks of data files (serving reads a run's config, not its rows).
    check_with_peft=False skips instantiating the peft config class, which imports peft and torch: the SageMaker
    launch checks our keys only (the launching machine needs no torch; the job validates in full before training).
    """
    typed = {name: typed_group(_group(cfg, name), name, schema) for name, schema in GROUPS.items()}
    typed["trainer"] = typed_group(_group(cfg, "trainer"), "trainer", TrainerSettings, keys=TRAINER_KEYS)
    if check_files:
        try:
            typed["dataset"].check_files()
        except SettingError as err:
            raise ConfigError(f"dataset.{err}") from err
    typed["peft"] = _peft_group(_group(cfg, "peft"))
    # a run folder written before the objective group existed trained with the task's own loss
    typed["objective"] = typed_group(cfg.get("objective") or OmegaConf.create({}), "objective", ObjectiveSettings)
    shape = check_task_fits(typed["model"], typed["dataset"], typed["peft"])
    check_objective_fits(typed["objective"], typed["dataset"], typed["peft"])
    check_hardware_fits(typed["model"], typed["peft"], typed["hardware"])
    resume = cfg.get("resume")
    if resume not in (None, "auto"):
        raise ConfigError(f"resume={resume!r}: null (start from scratch) or auto (continue from the last checkpoint)")
    if resume and cfg.get("ckpt_path"):
        raise ConfigError(f"ckpt_path={cfg.ckpt_path}: give either ckpt_path or resume=auto, not both")
    settings = RunSettings(
        **typed, seed=_int("seed", cfg.get("seed")), ckpt_path=cfg.get("ckpt_path"), resume=resume, shape=shape
    )
    if check_with_peft:
        check_peft_method(settings)
    return settings


def check_peft_method(settings: RunSettings) -> None:
    """What peft's own config class checks of a peft-library method, and the rules that need it. Last, and callable
    on its own (the training command checks the data files first): the one check that imports peft and torch."""
    if isinstance(settings.peft, PeftSettings):
        settings.peft.check_with_peft(settings.model.model_type)
        check_prompt_learning_sharding(settings.peft, settings.hardware)
        check_prompt_learning_packing(settings.peft, settings.dataset)


def check_task_fits(model: ModelSettings, dataset: DatasetSettings, peft: Any) -> str:
    """The task shape of dataset.task on model.architecture (config/tasks.py), if the method, the chat template and
    the metrics can train and score it there."""
    shape = task_shape(dataset.task, model.architecture, dataset.name, model.name)
    refused = peft.capabilities.refusal(model.model_type, shape)  # the method's record (conf/peft/*.yaml)
    if refused and refused[0] == "family":
        raise ConfigError(f"peft={peft.method} with model={model.name}: not supported ({refused[1]})")
    if refused:
        where = f"dataset={dataset.name} on model={model.name}"
        raise ConfigError(f"peft={peft.method} with {where}: not supported ({refused[1]})")
    if dataset.packing and shape not in PACKABLE_SHAPES:
        raise ConfigError(
            f"dataset.packing=true: packs causal training rows (shapes {', '.join(PACKABLE_SHAPES)}); "
            f"dataset={dataset.name} on model={model.name} is {shape}"
        )
    if dataset.chat_template and shape not in CAUSAL_SHAPES:
        raise ConfigError(f"dataset.chat_template=true: for causal models only (model={model.name} is {shape})")
    allowed = metric_names_for(dataset.task, model.architecture)
    for name in dataset.metrics:
        if name not in allowed:
            raise ConfigError(
                f"dataset.metrics: {name!r} is not available for {dataset.task} on model={model.name} "
                f"({model.architecture}); allowed: {', '.join(allowed)}"
            )
    return shape


def check_objective_fits(objective: ObjectiveSettings, dataset: DatasetSettings, peft: Any) -> None:
    """A preference objective needs preference rows and preference rows one; DPO/IPO need an adapter to disable."""
    if dataset.task == "preference" and objective.name not in PREFERENCE_OBJECTIVES:
        raise ConfigError(
            f"objective={objective.name}: dataset={dataset.name} holds preference pairs (prompt, chosen, rejected); "
            f"choose objective={', '.join(PREFERENCE_OBJECTIVES)}"
        )
    if objective.name in PREFERENCE_OBJECTIVES and dataset.task != "preference":
        raise ConfigError(
            f"objective={objective.name}: needs a preference dataset (dataset.task=preference: prompt, chosen and "
            f"rejected columns, e.g. dataset=detox_pref); dataset={dataset.name} is {dataset.task}"
        )
    if objective.name in REFERENCE_OBJECTIVES and peft.capabilities.adapter != "peft":
        raise ConfigError(
            f"objective={objective.name} with peft={peft.method}: the reference model is the base with the adapter "
            "disabled, and this method has no peft adapter to disable; use objective=orpo (no reference model)"
        )


# Strategies that shard or wrap the weights themselves: a 4-bit bitsandbytes base is neither sharded nor wrapped by
# Lightning's FSDP or DeepSpeed strategies (QLoRA with them needs their own 4-bit storage setup, not built here).
SHARDING_PREFIXES = ("fsdp", "deepspeed")
FLOAT16_PRECISIONS = ("16-mixed", "16-true", "16")
# FSDP shards the weights and adapter/ is gathered from the shards (run/gather.py). ZeRO stage 3 shards them too,
# but DeepSpeed's gather is not built (deepspeed does not install on the machines we test on): refused.
UNGATHERED_SHARDING = ("deepspeed_stage_3",)


def check_hardware_fits(model: ModelSettings, peft: Any, hardware: HardwareSettings) -> None:
    """Combinations of model, method and hardware that would fail or silently train wrong, refused before work."""
    if hardware.strategy.startswith(UNGATHERED_SHARDING):
        raise ConfigError(
            f"hardware.strategy={hardware.strategy}: not supported yet (ZeRO stage 3 shards the weights and "
            "adapter/ is not gathered from DeepSpeed's shards); use hardware=fsdp (sharded, gathered), hardware=ddp, "
            "or hardware=deepspeed (ZeRO stage 2: optimizer state and gradients sharded)"
        )
    if peft.capabilities.base_4bit and hardware.strategy.startswith(SHARDING_PREFIXES):
        raise ConfigError(
            f"peft={peft.method} with hardware.strategy={hardware.strategy}: not supported (a 4-bit base is not "
            "sharded by Lightning's FSDP/DeepSpeed); use hardware=ddp: each rank holds its own 4-bit copy"
        )
    if not model.float16 and str(hardware.precision) in FLOAT16_PRECISIONS:
        raise ConfigError(
            f"hardware.precision={hardware.precision}: model={model.name} overflows in float16; use bf16-mixed "
            "(GPUs with bfloat16), 32-true, or auto (picks one of them)"
        )


def check_prompt_learning_sharding(peft: PeftSettings, hardware: HardwareSettings) -> None:
    """peft saves a prompt-learning adapter by running its prompt encoder on the live weights, which FSDP shards."""
    from peft import PromptLearningConfig

    if hardware.strategy.startswith("fsdp") and issubclass(peft.config_class(), PromptLearningConfig):
        raise ConfigError(
            f"peft={peft.method} with hardware.strategy={hardware.strategy}: not supported (peft saves prompt "
            "embeddings from the live prompt encoder, which FSDP shards); use hardware=ddp"
        )


def check_prompt_learning_packing(peft: PeftSettings, dataset: DatasetSettings) -> None:
    """Virtual tokens (and prefix key/values) go before each sequence, i.e. before a whole bin, not before each row."""
    from peft import PromptLearningConfig

    if dataset.packing and issubclass(peft.config_class(), PromptLearningConfig):
        raise ConfigError(
            f"dataset.packing=true with peft={peft.method}: not supported (its virtual tokens are put before each "
            "sequence, so the rows of a bin would share them); use dataset.packing=false"
        )


def _group(cfg: DictConfig, name: str) -> DictConfig:
    if name not in cfg:
        raise ConfigError(f"{name}: group missing from the config (choose one with {name}=<option>)")
    return cfg[name]


def _peft_group(node: DictConfig) -> Any:
    """Our own methods have a schema each; a peft method (`_target_`) keeps its peft keys as PeftSettings.fields."""
    schema = schema_for(node)
    return typed_group(node, "peft", schema, reshape=split_peft_values if schema is PeftSettings else None)


def typed_group(node: DictConfig, name: str, schema: type, keys: set[str] | None = None, reshape=None) -> Any:
    """Group `name` (node) as its schema's dataclass (its __post_init__ run); a refusal is one ConfigError naming the
    full key.

    Merged into the schema again here: a run folder's config.yaml was never composed by Hydra, and a `+key=` override
    adds a key Hydra's schema lets through. Values are resolved first, as `${paths...}` or `${peft.lr}` point outside
    the group; `keys`: only these are resolved and checked (an open group's others may need Hydra's runtime).
    """
    try:
        values = {k: _resolved(node, k) for k in node if keys is None or k in keys}
    except OmegaConfBaseException as err:  # full_key is the whole key here: the node sits in cfg
        _reraise_user_error(err)  # a resolver's own error, e.g. packaged_model's "not installed"
        raise ConfigError(schema_error(err) if getattr(err, "full_key", None) else schema_error(err, name)) from err
    if reshape is not None:
        values = reshape(values)
    try:
        return OmegaConf.to_object(OmegaConf.merge(_schema_node(schema), values))
    except SettingError as err:
        raise ConfigError(f"{name}.{err}") from err
    except OmegaConfBaseException as err:  # full_key is within the group here
        raise ConfigError(schema_error(err, prefix=name)) from err


@functools.cache
def _schema_node(schema: type) -> DictConfig:
    """A schema's node, built once a process (OmegaConf reads the dataclass's fields and types: a third of validate's
    30 ms); OmegaConf.merge copies its first argument, so the kept node is never changed."""
    return OmegaConf.structured(schema)


def _resolved(node: DictConfig, key: str) -> Any:
    value = node[key]
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key}={value!r}: must be an integer")
    return value


def _reraise_user_error(err: BaseException) -> None:
    """A resolver (e.g. packaged_model) may raise a PeftlabError inside OmegaConf's wrapper: surface it."""
    cause = err
    while cause is not None:
        if isinstance(cause, PeftlabError):
            raise cause
        cause = cause.__cause__ or cause.__context__

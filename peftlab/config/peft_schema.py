"""Schemas of the peft group: our keys (method, lr, capabilities) typed here; peft's config classes check the rest.

A peft method's YAML names its config class (`_target_: peft.LoraConfig`) and writes that class's fields flat beside
ours (`peft.r`, `peft.lora_alpha`), so a new peft method is one YAML file. validate() instantiates the class before any
weights or data load and turns what peft refuses into one line. peft 0.21.2 accepts nonsense like r=0, r=-1 or
lora_dropout=2.0 at that point, so FIELD_CHECKS checks the common fields first, without importing torch.
peftlab's own methods (our parallel adapter, the full / head_only baselines, none) are config/method_schema.py's.
"""

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from peftlab.config.checks import check, check_choice, check_positive
from peftlab.config.method_schema import OWN_SCHEMAS, MethodSettings
from peftlab.errors import ConfigError


def _int_at_least(low: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


def _probability(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1


def _targets(v: Any) -> bool:
    return v is None or (isinstance(v, str) and bool(v)) or (isinstance(v, list) and bool(v))


# Our checks of fields several peft configs share, where peft 0.21.2 accepts nonsense at config time (and fails
# later, deep in training, or never). Field -> (test, what is allowed); any `*dropout` field is a probability.
FIELD_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "r": (_int_at_least(1), "LoRA rank must be an integer >= 1"),
    "init_r": (_int_at_least(1), "AdaLoRA's initial rank must be an integer >= 1"),
    "target_r": (_int_at_least(1), "AdaLoRA's target rank must be an integer >= 1"),
    "lora_alpha": (_positive, "must be > 0"),
    "alpha": (_positive, "must be > 0"),
    "num_virtual_tokens": (_int_at_least(1), "must be an integer >= 1"),
    "target_modules": (_targets, "null (peft's default for the family), a non-empty list of module names, or a regex"),
    "bias": (lambda v: v in ("none", "all", "lora_only"), "allowed values are none, all, lora_only"),
}
DROPOUT_CHECK = (_probability, "must be in [0, 1)")


def _total_step_stand_in(fields: dict) -> int:
    return (fields.get("tinit") or 0) + (fields.get("tfinal") or 0) + 1


# peft fields only the run knows, null in the YAML. Until then a stand-in lets peft check the rest: AdaLoRA's
# total_step becomes the Trainer's planned optimizer steps when training starts (models/methods.py).
RUN_TIME_FIELDS: dict[str, Callable[[dict], Any]] = {"total_step": _total_step_stand_in}
QUANT_TYPES = ("nf4", "fp4")
COMPUTE_DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class PeftSettings(MethodSettings):
    """A method of the peft library: `_target_` names its config class, `fields` are that class's keyword arguments.

    peft's fields read as attributes, as the YAML spells them: `settings.peft.r` is `peft.r`.
    """

    _target_: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    # capabilities.base_4bit (QLoRA): how bitsandbytes quantises the base.
    quant_type: str | None = None
    double_quant: bool | None = None
    compute_dtype: str | None = None  # bfloat16 on GPUs that have it (the QLoRA paper's setting)
    # LoRA+ (Hayou et al. 2024): B matrices train at lr x ratio (peft.optimizers.create_loraplus_optimizer).
    loraplus_lr_ratio: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check(bool(self._target_), "_target_", self._target_, "a peft config class, e.g. peft.LoraConfig")
        for key, value in self.fields.items():
            ok, allowed = FIELD_CHECKS.get(key) or (DROPOUT_CHECK if key.endswith("dropout") else (None, ""))
            if ok is not None and not (value is None and key in RUN_TIME_FIELDS):
                check(ok(value), key, value, allowed)
        quant = {"quant_type": QUANT_TYPES, "compute_dtype": COMPUTE_DTYPES, "double_quant": (True, False)}
        for key, choices in quant.items():
            if self.capabilities.base_4bit:
                check_choice(key, getattr(self, key), choices)
            else:
                check(getattr(self, key) is None, key, getattr(self, key), "only with capabilities.base_4bit: true")
        check_positive("loraplus_lr_ratio", self.loraplus_lr_ratio, allow_none=True)

    def __getattr__(self, name: str) -> Any:
        fields = self.__dict__.get("fields")  # absent while unpickling: plain AttributeError then
        if fields is not None and name in fields:
            return fields[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def values(self) -> dict[str, Any]:
        ours = {"method": self.method, "lr": self.lr, "_target_": self._target_}
        extras = {k: getattr(self, k) for k in ("quant_type", "double_quant", "compute_dtype", "loraplus_lr_ratio")}
        return {**ours, **self.fields, **{k: v for k, v in extras.items() if v is not None}}

    def stand_ins(self) -> dict[str, Any]:
        """Values for the run-time fields the YAML leaves null (RUN_TIME_FIELDS)."""
        return {k: fill(self.fields) for k, fill in RUN_TIME_FIELDS.items() if self.fields.get(k, 0) is None}

    def config_class(self) -> type:
        from hydra.utils import get_class  # imports peft (and torch): only once the fast checks have passed

        try:
            return get_class(self._target_)
        except Exception as err:  # ImportError, or Hydra's "... is not a class"
            raise ConfigError(f"peft._target_={self._target_}: not a peft config class ({_first_line(err)})") from err

    def peft_config(self, **run_time: Any):
        """The peft config object, `run_time` (task_type, modules_to_save, ...) added; peft's refusals as one line."""
        cls = self.config_class()
        known = {f.name for f in dataclasses.fields(cls) if f.init} if dataclasses.is_dataclass(cls) else set()
        unknown = sorted(set(self.fields) - known)
        if known and unknown:
            ours = set(self.values()) - set(self.fields)
            allowed = sorted((known - set(run_time) - {"peft_type", "task_type"}) | ours)
            raise ConfigError(f"peft.{unknown[0]}: unknown key; allowed keys are {', '.join(allowed)}")
        try:
            return cls(**{**self.fields, **self.stand_ins(), **run_time})
        except (ValueError, TypeError) as err:
            raise ConfigError(self._blame(err)) from err

    def check_with_peft(self, model_type: str | None) -> None:
        """Instantiate the config once, before anything loads (validate() calls this last). A family peft has no
        default targets for (target_modules: null) is refused here too, rather than after the weights load."""
        config = self.peft_config()
        if getattr(config, "target_modules", "") is not None or not model_type:
            return
        from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING

        defaults = getattr(PEFT_TYPE_TO_TUNER_MAPPING.get(config.peft_type), "target_module_mapping", None)
        if defaults is not None and model_type not in defaults:
            raise ConfigError(
                f"peft.target_modules=None: peft has no default {type(config).__name__} targets for model_type "
                f"{model_type}; set peft.target_modules=[...] (or the family's model.peft_defaults)"
            )

    def _blame(self, err: Exception) -> str:
        """peft's message as `peft.<key>=<value>: <reason>`, the key being the first field it names."""
        message = _first_line(err)
        named = [(m.start(), k) for k in self.fields if (m := re.search(rf"\b{re.escape(k)}\b", message))]
        if not named:
            return f"peft._target_={self._target_}: {message}"
        key = min(named)[1]
        return f"peft.{key}={self.fields[key]!r}: {message}"


def schema_for(node: Any) -> type[MethodSettings]:
    """The schema of a composed `peft` node: a peft method if it names a `_target_`, else one of ours by name."""
    if node is not None and "_target_" in node:
        return PeftSettings
    method = node.get("method") if node is not None else None
    if method not in OWN_SCHEMAS:
        raise ConfigError(
            f"peft.method={method!r}: needs peft._target_ (a peft config class, e.g. peft.LoraConfig) unless it is "
            f"one of peftlab's own methods: {', '.join(OWN_SCHEMAS)}"
        )
    return OWN_SCHEMAS[method]


def split_peft_values(values: dict[str, Any]) -> dict[str, Any]:
    """A peft method's resolved YAML values -> PeftSettings' keyword arguments: our keys, the rest as `fields`."""
    ours = {f.name for f in dataclasses.fields(PeftSettings)} - {"fields"}
    theirs = {k: v for k, v in values.items() if k not in ours}
    return {**{k: v for k, v in values.items() if k in ours}, "fields": theirs}


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__

"""Schemas of peftlab's own peft-group methods (our parallel adapter, the full / head_only baselines, none), and what
every method has (MethodSettings): its name, learning rate and capabilities.

Each is a Hydra structured config its option YAML starts from (config/store.py: conf/peft/full.yaml's defaults list
names schema/peft/full), so a wrong type or unknown key fails while Hydra composes. The peft library's methods are
PeftSettings (config/peft_schema.py), whose fields peft's own config classes check.
"""

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from peftlab.config.capabilities import Capabilities
from peftlab.config.checks import check, check_choice, check_positive


@dataclass
class MethodSettings:
    """What every method has: its name (the peft= option: metrics.json's `method`, the report's row), its
    recommended learning rate (optim.lr follows it), the range a learning-rate search spans and its capabilities."""

    method: str = ""
    lr: float = 5e-4
    # [low, high]: the learning rates `python -m peftlab.compare` tries for this method (a log grid). Per method,
    # because the right rate differs by orders of magnitude between methods (full 3e-5, prompt tuning 3e-2).
    lr_range: list[float] = field(default_factory=list)
    capabilities: Capabilities = field(default_factory=Capabilities)

    def __post_init__(self) -> None:
        check_positive("lr", self.lr)
        if self.lr_range:
            ok = len(self.lr_range) == 2 and 0 < self.lr_range[0] < self.lr_range[1]
            check(ok, "lr_range", self.lr_range, "[low, high] with 0 < low < high, or [] (no search declared)")

    def values(self) -> dict[str, Any]:
        """The settings as the YAML spells them (`peft.<key>`), capabilities aside: what a model card lists."""
        skip = ("capabilities", "lr_range")
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}


@dataclass
class FullSettings(MethodSettings):
    """Full fine-tuning baseline: nothing to configure but the learning rate."""

    method: str = "full"
    lr: float = 3e-5


@dataclass
class HeadOnlySettings(MethodSettings):
    """Frozen base, trainable head (the model's head_modules)."""

    method: str = "head_only"
    lr: float = 2e-3


@dataclass
class ParallelAdapterSettings(MethodSettings):
    """Parallel adapter (He et al. 2022): a scaled bottleneck beside each FFN block (models/parallel_adapter.py)."""

    method: str = "adapters"
    reduction_factor: int = 16
    scaling: float = 4.0
    activation: str = "relu"
    ffn_input: str = ""  # module (relative to a block) whose input is the FFN input
    ffn_output: str = ""  # module whose output receives the adapter's contribution
    lr: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.reduction_factor >= 1, "reduction_factor", self.reduction_factor, "must be an integer >= 1")
        check_choice("activation", self.activation, ("relu", "gelu", "silu", "tanh"))
        for key in ("ffn_input", "ffn_output"):
            check(bool(getattr(self, key)), key, getattr(self, key), "a module name (family default in model YAML)")


@dataclass
class NoMethodSettings(MethodSettings):
    """The base model as loaded: for evaluation before fine-tuning (train.py rejects it)."""

    method: str = "none"


# Methods without a `_target_`, by `peft.method`: their schema (and, in models/methods.py, their builder).
OWN_SCHEMAS: dict[str, type[MethodSettings]] = {
    "adapters": ParallelAdapterSettings,
    "full": FullSettings,
    "head_only": HeadOnlySettings,
    "none": NoMethodSettings,
}

"""Typed schemas of the peft group, one per method; `peft.method` picks the schema (PEFT_SCHEMAS)."""

from dataclasses import dataclass
from typing import Any

from peftlab.config.checks import check, check_choice, check_positive

LORA_BIAS = ("none", "all", "lora_only")


@dataclass
class MethodSettings:
    """What every PEFT method has: its registry name and its recommended learning rate."""

    method: str = ""
    lr: float = 5e-4

    def __post_init__(self) -> None:
        check_positive("lr", self.lr)


@dataclass
class LoraSettings(MethodSettings):
    """LoRA hyper-parameters; handed to peft.LoraConfig, which validates the rest."""

    method: str = "lora"
    r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    target_modules: Any = None
    bias: str = "none"
    use_rslora: bool = False
    fan_in_fan_out: bool = False  # True for GPT-2's Conv1D layers (weights stored as in x out)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.r >= 1, "r", self.r, "LoRA rank must be an integer >= 1")
        check_positive("lora_alpha", self.lora_alpha)
        check(0.0 <= self.lora_dropout < 1.0, "lora_dropout", self.lora_dropout, "must be in [0, 1)")
        check(bool(self.target_modules), "target_modules", self.target_modules, "a non-empty list of module names")
        check_choice("bias", self.bias, LORA_BIAS)


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
class QLoraSettings(LoraSettings):
    """LoRA on a 4-bit (bitsandbytes) base: quantisation type, double quantisation and compute dtype."""

    method: str = "qlora"
    quant_type: str = "nf4"
    double_quant: bool = True
    compute_dtype: str = "float32"  # bfloat16 on GPUs that have it (the QLoRA paper's setting)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("quant_type", self.quant_type, ("nf4", "fp4"))
        check_choice("compute_dtype", self.compute_dtype, ("float32", "bfloat16", "float16"))


@dataclass
class IA3Settings(MethodSettings):
    """(IA)^3 (Liu et al. 2022): learned rescaling of keys, values and FFN activations, through peft."""

    method: str = "ia3"
    target_modules: Any = None
    feedforward_modules: Any = None
    fan_in_fan_out: bool = False
    lr: float = 3e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        check(bool(self.target_modules), "target_modules", self.target_modules, "a non-empty list of module names")


@dataclass
class PrefixSettings(MethodSettings):
    """Prefix tuning (Li & Liang 2021) through peft: trained key/value prefixes in every attention layer."""

    method: str = "prefix"
    num_virtual_tokens: int = 20
    prefix_projection: bool = False
    encoder_hidden_size: int | None = None  # width of the projection MLP (prefix_projection=true)
    lr: float = 1e-2

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.num_virtual_tokens >= 1, "num_virtual_tokens", self.num_virtual_tokens, "must be >= 1")
        check_positive("encoder_hidden_size", self.encoder_hidden_size, allow_none=True)


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


# The peft group's registry: `peft.method` picks the schema (and, in models/methods.py, the builder).
PEFT_SCHEMAS: dict[str, type] = {
    "lora": LoraSettings,
    "qlora": QLoraSettings,
    "ia3": IA3Settings,
    "prefix": PrefixSettings,
    "adapters": ParallelAdapterSettings,
    "full": FullSettings,
    "head_only": HeadOnlySettings,
    "none": NoMethodSettings,
}

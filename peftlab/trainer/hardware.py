"""Hardware checks and the `precision: auto` choice, done before any weights are loaded."""

import importlib.util

import torch

from peftlab.config.schema import STRATEGIES, HardwareSettings, ModelSettings
from peftlab.errors import ConfigError


def check_hardware(settings: HardwareSettings) -> None:
    """What this machine must have for the hardware option: the strategy's package, then a GPU if asked for."""
    package, _ = STRATEGIES[settings.strategy]
    if package is not None and importlib.util.find_spec(package) is None:
        raise ConfigError(
            f"hardware.strategy={settings.strategy!r}: needs the '{package}' package, which is not installed: "
            f"pip install {package}"
        )
    if settings.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"hardware={settings.name}: no CUDA device is visible on this machine; use hardware=cpu")


def resolve_precision(settings: HardwareSettings, model: ModelSettings | None = None) -> str:
    """`auto` -> bf16-mixed on GPUs that support it, else 16-mixed on GPU (32-true for a family whose activations
    overflow float16, model.float16=false: T5 on a T4 or V100), else full fp32."""
    if settings.precision != "auto":
        return str(settings.precision)
    if settings.accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return "bf16-mixed"
        return "16-mixed" if model is None or model.float16 else "32-true"
    return "32-true"

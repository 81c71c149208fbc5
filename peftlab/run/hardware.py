"""Hardware checks and the `precision: auto` choice, done before any weights are loaded."""

import torch

from peftlab.config.schema import HardwareSettings
from peftlab.errors import ConfigError


def check_hardware(settings: HardwareSettings) -> None:
    if settings.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"hardware={settings.name}: no CUDA device is visible on this machine; use hardware=cpu")


def resolve_precision(settings: HardwareSettings) -> str:
    """`auto` -> bf16-mixed on GPUs that support it, else 16-mixed on GPU, else full fp32."""
    if settings.precision != "auto":
        return str(settings.precision)
    if settings.accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"

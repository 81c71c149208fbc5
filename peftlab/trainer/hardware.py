"""Hardware checks on the training machine and the `precision: auto` choice, done before any weights are loaded.

Lightning answers what this machine must have: its strategy classes check their own packages, its accelerators
parse `devices` against the devices present. Their refusals become one line naming the hardware key.
"""

import torch

from peftlab.config.schema import HardwareSettings, ModelSettings
from peftlab.errors import ConfigError


def check_hardware(settings: HardwareSettings) -> None:
    """What this machine must have for the hardware option: the strategy's package, a GPU if asked for, the devices."""
    from lightning_fabric.utilities.exceptions import MisconfigurationException
    from pytorch_lightning.strategies import StrategyRegistry

    if settings.strategy in StrategyRegistry:  # `auto` is Lightning's choice, made when the Trainer is built
        try:
            StrategyRegistry.get(settings.strategy)  # e.g. DeepSpeedStrategy: "you must have DeepSpeed installed"
        except (MisconfigurationException, ImportError) as err:
            raise ConfigError(f"hardware.strategy={settings.strategy!r}: {_one_line(err)}") from err
    if settings.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"hardware={settings.name}: no CUDA device is visible on this machine; use hardware=cpu")
    parallel_devices(settings.accelerator, settings.devices)


def parallel_devices(accelerator: str, devices) -> list[torch.device]:
    """The devices Lightning runs one process each on for Trainer(accelerator, devices) on this machine, as its
    accelerator parses them (`auto`, -1: all it finds); a request the machine cannot meet names hardware.devices."""
    from lightning_fabric.accelerators import ACCELERATOR_REGISTRY
    from lightning_fabric.connector import _Connector
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    if accelerator == "auto":
        accelerator = _Connector._choose_auto_accelerator()
    elif accelerator == "gpu":  # MPS or CUDA, whichever this machine has (Lightning's own order)
        try:
            accelerator = _Connector._choose_gpu_accelerator_backend()
        except RuntimeError:  # none: CUDA's parser says so ("GPUs requested but none are available")
            accelerator = "cuda"
    kind = ACCELERATOR_REGISTRY[accelerator]["accelerator"]
    try:
        parsed = kind.parse_devices(kind.auto_device_count() if devices == "auto" else devices)
        return kind.get_parallel_devices(parsed)
    except (MisconfigurationException, TypeError, ValueError) as err:
        raise ConfigError(f"hardware.devices={devices}: {_one_line(err)}") from err


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


def _one_line(err: BaseException) -> str:
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__

"""Config stage: typed schemas of each group, validation, and OmegaConf resolvers."""

from peftlab.config.schema import (
    DatasetSettings,
    HardwareSettings,
    ModelSettings,
    RunSettings,
    TrainerSettings,
)
from peftlab.config.validate import validate

__all__ = [
    "DatasetSettings",
    "HardwareSettings",
    "ModelSettings",
    "RunSettings",
    "TrainerSettings",
    "validate",
]

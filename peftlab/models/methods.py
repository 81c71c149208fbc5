"""PEFT method registry: `peft.method` -> a function that makes the right parameters trainable.

LoRA goes through peft (get_peft_model); `full` and `head_only` are the two comparison baselines and need no peft.
Every method keeps the model's head modules trainable (for LoRA via peft's modules_to_save, so they are saved).
"""

from collections.abc import Callable

import peft
import torch

from peftlab.config.schema import FullSettings, HeadOnlySettings, LoraSettings
from peftlab.errors import ConfigError

# dataset.task -> peft task type (decides which wrapper class peft builds).
TASK_PEFT_TYPES = {"classification": peft.TaskType.SEQ_CLS}


def linear_module_names(model: torch.nn.Module) -> list[str]:
    """Distinct short names of Linear layers: what `target_modules` can name."""
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)})


def apply_lora(model: torch.nn.Module, settings: LoraSettings, head_modules: list[str], task: str):
    config = peft.LoraConfig(
        task_type=TASK_PEFT_TYPES[task],
        r=settings.r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=settings.target_modules,
        bias=settings.bias,
        use_rslora=settings.use_rslora,
        modules_to_save=list(head_modules),  # else the new head is silently not saved (peft #310, #577)
    )
    try:
        return peft.get_peft_model(model, config)
    except ValueError as err:  # peft raises NoMatchingPeftModuleError (a ValueError) or a plain ValueError
        if type(err).__name__ != "NoMatchingPeftModuleError" and "not found in the base model" not in str(err):
            raise
        raise ConfigError(
            f"peft.target_modules={settings.target_modules}: not found in the model; "
            f"its Linear modules are {', '.join(linear_module_names(model))}"
        ) from err


def apply_full(model: torch.nn.Module, settings: FullSettings, head_modules: list[str], task: str):
    for param in model.parameters():
        param.requires_grad_(True)
    return model


def apply_head_only(model: torch.nn.Module, settings: HeadOnlySettings, head_modules: list[str], task: str):
    model.requires_grad_(False)
    matched = [m for name, m in model.named_modules() if _is_head(name, head_modules)]
    if not matched:
        children = ", ".join(name for name, _ in model.named_children())
        raise ConfigError(f"model.head_modules={list(head_modules)}: no such module (top-level modules: {children})")
    for module in matched:
        module.requires_grad_(True)
    return model


def _is_head(name: str, head_modules: list[str]) -> bool:
    return any(name == h or name.endswith("." + h) for h in head_modules)


METHODS: dict[str, Callable] = {"lora": apply_lora, "full": apply_full, "head_only": apply_head_only}


def apply_method(model: torch.nn.Module, settings, head_modules: list[str], task: str) -> torch.nn.Module:
    """Return the model ready to train with settings.method (validated beforehand, so the key exists)."""
    return METHODS[settings.method](model, settings, head_modules, task)

"""Training hooks of methods that shape their own training (LoRA+'s optimizer, AdaLoRA's rank budget).

PeftModule calls them; a hand-written loop (tests, bench/methods_matrix.py) can too. models/methods.py marks the
model when it applies such a method, so these dispatch on the model, not on method names.
"""

from collections.abc import Callable

import peft
import torch

from peftlab.errors import ConfigError
from peftlab.models.methods import LORAPLUS_RATIO, PLANNED_TOTAL_STEP


def build_optimizer(model: torch.nn.Module, factory: Callable, groups: list[dict], total_steps: int):
    """The optimizer over `groups` (decay / no decay); methods that shape their own training get it here:
    LoRA+ builds peft's create_loraplus_optimizer from the same optimizer class and arguments, and AdaLoRA learns
    the run's planned optimizer steps (its rank budget is scheduled over them)."""
    tuner = getattr(model, "base_model", None)
    if isinstance(tuner, peft.AdaLoraModel) and getattr(model, PLANNED_TOTAL_STEP, False):
        config = tuner.peft_config[tuner.trainable_adapter_name]
        if config.tinit >= total_steps - config.tfinal:
            raise ConfigError(
                f"peft.tinit={config.tinit}, peft.tfinal={config.tfinal}: leave no steps to reallocate ranks in "
                f"this run's {total_steps} optimizer steps"
            )
        tuner.rankallocator.set_total_step(total_steps)  # the same config object peft saves
    ratio = getattr(model, LORAPLUS_RATIO, None)
    if ratio is None:
        return factory(groups)
    from peft.optimizers import create_loraplus_optimizer

    kwargs = dict(getattr(factory, "keywords", {}))  # Hydra's _partial_: functools.partial(cls, lr=..., ...)
    lr, weight_decay = kwargs.pop("lr"), kwargs.pop("weight_decay", 0.0)
    return create_loraplus_optimizer(
        model,
        getattr(factory, "func", factory),
        lr=lr,
        loraplus_lr_ratio=ratio,
        loraplus_weight_decay=weight_decay,
        **kwargs,
    )


def after_optimizer_step(model: torch.nn.Module, global_step: int) -> None:
    """AdaLoRA: update the importance scores and reallocate ranks (needs the gradients: before zero_grad)."""
    tuner = getattr(model, "base_model", None)
    if isinstance(tuner, peft.AdaLoraModel):
        tuner.update_and_allocate(global_step)

"""PEFT method registry: `peft.method` -> how to load the base for it, make it trainable, and save it.

peft does LoRA, QLoRA's LoRA part, IA3 and prefix tuning (a thin mapping from our settings to its config classes);
the parallel adapter is ours (parallel_adapter.py); `full` and `head_only` are the comparison baselines.
Every method keeps the model's head modules trainable and saved.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import peft
import torch

from peftlab.compat import use_bitsandbytes
from peftlab.errors import ConfigError
from peftlab.models import parallel_adapter

# Task shape -> peft task type (decides which wrapper class peft builds). peft has no multiple-choice type:
# None gives the plain PeftModel, which passes the [batch, choices, length] inputs through unchanged.
TASK_PEFT_TYPES = {
    "classify": peft.TaskType.SEQ_CLS,
    "choose": None,
    "seq2seq": peft.TaskType.SEQ_2_SEQ_LM,
    "causal": peft.TaskType.CAUSAL_LM,
}


def linear_module_names(model: torch.nn.Module) -> list[str]:
    """Distinct short names of Linear layers (Conv1D in GPT-2): what `target_modules` can name."""
    from transformers.pytorch_utils import Conv1D

    return sorted(
        {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, (torch.nn.Linear, Conv1D))}
    )


def _wrap_with_peft(model, config, settings):
    try:
        return peft.get_peft_model(model, config)
    except ValueError as err:  # peft raises NoMatchingPeftModuleError (a ValueError) or a plain ValueError
        if type(err).__name__ != "NoMatchingPeftModuleError" and "not found in the base model" not in str(err):
            raise
        raise ConfigError(
            f"peft.target_modules={settings.target_modules}: not found in the model; "
            f"its Linear modules are {', '.join(linear_module_names(model))}"
        ) from err


def apply_lora(model, settings, head_modules, shape):
    config = peft.LoraConfig(
        task_type=TASK_PEFT_TYPES[shape],
        r=settings.r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=settings.target_modules,
        bias=settings.bias,
        use_rslora=settings.use_rslora,
        fan_in_fan_out=settings.fan_in_fan_out,
        modules_to_save=list(head_modules),  # else the new head is silently not saved (peft #310, #577)
    )
    return _wrap_with_peft(model, config, settings)


def qlora_load_kwargs(settings, head_modules) -> dict:
    """4-bit base; the head stays out of quantisation (llm_int8_skip_modules) so it can train in full precision."""
    from transformers import BitsAndBytesConfig

    use_bitsandbytes()

    return {
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=settings.quant_type,
            bnb_4bit_use_double_quant=settings.double_quant,
            bnb_4bit_compute_dtype=getattr(torch, settings.compute_dtype),
            # None (no task head: generation) lets transformers keep its default, the output embedding, unquantised.
            llm_int8_skip_modules=list(head_modules) or None,
        )
    }


def apply_qlora(model, settings, head_modules, shape):
    model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return apply_lora(model, settings, head_modules, shape)


def apply_ia3(model, settings, head_modules, shape):
    config = peft.IA3Config(
        task_type=TASK_PEFT_TYPES[shape],
        target_modules=settings.target_modules,
        feedforward_modules=settings.feedforward_modules,
        fan_in_fan_out=settings.fan_in_fan_out,
        modules_to_save=list(head_modules),
    )
    return _wrap_with_peft(model, config, settings)


def apply_prefix(model, settings, head_modules, shape):
    config = peft.PrefixTuningConfig(
        task_type=TASK_PEFT_TYPES[shape],
        num_virtual_tokens=settings.num_virtual_tokens,
        prefix_projection=settings.prefix_projection,
        encoder_hidden_size=settings.encoder_hidden_size or model.config.hidden_size,
        modules_to_save=list(head_modules),
    )
    return peft.get_peft_model(model, config)


def apply_parallel_adapters(model, settings, head_modules, shape):
    model.requires_grad_(False)
    config = {k: getattr(settings, k) for k in ("reduction_factor", "scaling", "activation", "ffn_input", "ffn_output")}
    parallel_adapter.inject_parallel_adapters(model, config)
    for name, param in model.named_parameters():
        if f".{parallel_adapter.ATTR}." in name or _is_head(name.rsplit(".", 1)[0], head_modules):
            param.requires_grad_(True)
    return model


def apply_full(model, settings, head_modules, shape):
    for param in model.parameters():
        param.requires_grad_(True)
    return model


def apply_head_only(model, settings, head_modules, shape):
    model.requires_grad_(False)
    matched = [m for name, m in model.named_modules() if _is_head(name, head_modules)]
    if not matched:
        children = ", ".join(name for name, _ in model.named_children())
        raise ConfigError(f"model.head_modules={list(head_modules)}: no such module (top-level modules: {children})")
    for module in matched:
        module.requires_grad_(True)
    return model


def apply_none(model, settings, head_modules, shape):
    return model.requires_grad_(False)


def load_none(base, folder: Path):
    return base


def _is_head(name: str, head_modules: list[str]) -> bool:
    return any(name == h or name.endswith("." + h) or name.startswith(h + ".") for h in head_modules)


def save_pretrained(model, out_dir: Path, head_modules) -> None:
    """peft models write adapter_config.json + adapter_model.safetensors; plain models a full checkpoint."""
    model.save_pretrained(out_dir)


def save_parallel(model, out_dir: Path, head_modules) -> None:
    parallel_adapter.save_parallel_adapters(model, out_dir, head_modules)


def load_peft_adapter(base, folder: Path):
    return peft.PeftModel.from_pretrained(base, folder)


def load_parallel(base, folder: Path):
    return parallel_adapter.load_parallel_adapters(base, folder)


def load_full_model(base, folder: Path):
    return type(base).from_pretrained(folder)


@dataclass(frozen=True)
class Method:
    apply: Callable
    save: Callable = save_pretrained
    load: Callable = load_peft_adapter  # (fresh base, adapter folder) -> trained model
    load_kwargs: Callable | None = None  # extra from_pretrained arguments (QLoRA: quantization_config)


METHODS: dict[str, Method] = {
    "lora": Method(apply_lora),
    "qlora": Method(apply_qlora, load_kwargs=qlora_load_kwargs),
    "ia3": Method(apply_ia3),
    "prefix": Method(apply_prefix),
    "adapters": Method(apply_parallel_adapters, save=save_parallel, load=load_parallel),
    "full": Method(apply_full, load=load_full_model),
    "head_only": Method(apply_head_only, load=load_full_model),
    "none": Method(apply_none, save=lambda model, out_dir, head: None, load=load_none),
}


def load_kwargs_for(settings, head_modules) -> dict:
    method = METHODS[settings.method]
    return method.load_kwargs(settings, head_modules) if method.load_kwargs else {}


def apply_method(model: torch.nn.Module, settings, head_modules: list[str], shape: str) -> torch.nn.Module:
    """Return the model ready to train with settings.method (validated beforehand, so the key exists)."""
    return METHODS[settings.method].apply(model, settings, head_modules, shape)


def save_trained(model: torch.nn.Module, settings, head_modules: list[str], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    METHODS[settings.method].save(model, out_dir, head_modules)


def load_trained(base: torch.nn.Module, settings, folder: Path) -> torch.nn.Module:
    """Put what save_trained wrote back onto a fresh base (for QLoRA: a freshly quantised one)."""
    return METHODS[settings.method].load(base, Path(folder))


def base_memory_footprint(model: torch.nn.Module, full_precision_bytes_per_param: int) -> dict:
    """Bytes of the loaded weights vs the same model unquantised (4-bit layers store two weights per byte)."""
    loaded = full = 0
    for module in model.modules():
        for param in module.parameters(recurse=False):
            loaded += param.numel() * param.element_size()
            shape = getattr(param, "quant_state", None)
            numel = shape.shape.numel() if shape is not None else param.numel()
            full += numel * full_precision_bytes_per_param
    return {"loaded_mb": round(loaded / 2**20, 2), "full_precision_mb": round(full / 2**20, 2)}

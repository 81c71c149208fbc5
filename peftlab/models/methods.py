"""PEFT methods: how to load the base for a method, make it trainable, save it and load it back.

A peft method is whatever peft config class its YAML names (`_target_`, conf/peft/<name>.yaml): one builder serves
them all, with a few hooks chosen by config type (prompt encoders' width, AdaLoRA's step budget) or by our own keys
(a 4-bit base, LoRA+'s optimizer). peftlab's own methods are the parallel adapter (parallel_adapter.py) and the
baselines `full`, `head_only` and `none`. Every method keeps the model's head modules trainable and saved.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import peft
import torch

from peftlab.compat import name_loaded_adalora_adapter, use_bitsandbytes
from peftlab.config.method_schema import FullSettings, HeadOnlySettings, NoMethodSettings, ParallelAdapterSettings
from peftlab.config.peft_schema import PeftSettings
from peftlab.config.tasks import CAUSAL_SHAPES
from peftlab.errors import ConfigError
from peftlab.models import parallel_adapter

# Task shape -> peft task type (decides which wrapper class peft builds). peft has no multiple-choice type:
# None gives the plain PeftModel, which passes the [batch, choices, length] inputs through unchanged.
TASK_PEFT_TYPES = {
    "classify": peft.TaskType.SEQ_CLS,
    "choose": None,
    "seq2seq": peft.TaskType.SEQ_2_SEQ_LM,
    **dict.fromkeys(CAUSAL_SHAPES, peft.TaskType.CAUSAL_LM),
}
LORAPLUS_RATIO = "peftlab_loraplus_lr_ratio"  # set on a model trained with LoRA+: the optimizer hook reads it
PLANNED_TOTAL_STEP = "peftlab_planned_total_step"  # AdaLoRA whose total_step waits for the Trainer's plan


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


def _prompt_encoder_width(config, model) -> None:
    """Prefix tuning's projection and P-tuning's MLP encoder: width null in the YAML = the model's hidden size."""
    if config.encoder_hidden_size is None:
        config.encoder_hidden_size = model.config.hidden_size


# peft config type -> what its config still needs from the loaded model (dispatch on type, not on method names).
FROM_MODEL: dict[type, Callable] = {
    peft.PrefixTuningConfig: _prompt_encoder_width,
    peft.PromptEncoderConfig: _prompt_encoder_width,
}


def apply_peft(model, settings: PeftSettings, head_modules, shape):
    """Any peft method: its config (validated before loading) + what the run knows, then get_peft_model."""
    if settings.capabilities.base_4bit:
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    saved = list(dict.fromkeys([*head_modules, *(settings.fields.get("modules_to_save") or [])]))
    # modules_to_save: else the new head is silently not saved (peft #310, #577)
    config = settings.peft_config(task_type=TASK_PEFT_TYPES[shape], modules_to_save=saved)
    for kind, fill in FROM_MODEL.items():
        if isinstance(config, kind):
            fill(config, model)
    model = _wrap_with_peft(model, config, settings)
    if settings.loraplus_lr_ratio is not None:
        setattr(model, LORAPLUS_RATIO, settings.loraplus_lr_ratio)
    if "total_step" in settings.stand_ins():
        setattr(model, PLANNED_TOTAL_STEP, True)
    return model


def quantized_load_kwargs(settings: PeftSettings, head_modules, device: torch.device | None = None) -> dict:
    """4-bit base; the head stays out of quantisation (llm_int8_skip_modules) so it can train in full precision.

    On a GPU the whole 4-bit copy goes to this process's own device (`device`: the trainer's root device, cuda:k on
    DDP rank k). Without a device_map transformers quantises onto torch.cuda.current_device(), which is cuda:0 for
    every rank before Lightning sets the device: a full node would stack all its copies on GPU 0. device_map="auto"
    is never used: it would shard one copy across the GPUs and turn data parallelism into model parallelism.
    """
    from transformers import BitsAndBytesConfig

    use_bitsandbytes()

    kwargs = {
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=settings.quant_type,
            bnb_4bit_use_double_quant=settings.double_quant,
            bnb_4bit_compute_dtype=getattr(torch, resolved_compute_dtype(settings.compute_dtype, device)),
            # None (no task head: generation) lets transformers keep its default, the output embedding, unquantised.
            llm_int8_skip_modules=list(head_modules) or None,
        )
    }
    if device is not None and device.type == "cuda":
        kwargs["device_map"] = {"": device}
    return kwargs


def resolved_compute_dtype(name: str, device: torch.device | None) -> str:
    """compute_dtype=auto: bfloat16 on a GPU that has it (the QLoRA paper's setting), float32 elsewhere (CPU, T4, V100:
    their float16 overflows in T5-like models)."""
    if name != "auto":
        return name
    on_gpu = device is not None and device.type == "cuda"
    return "bfloat16" if on_gpu and torch.cuda.is_bf16_supported(including_emulation=False) else "float32"


def peft_load_kwargs(settings: PeftSettings, head_modules, device: torch.device | None = None) -> dict:
    return quantized_load_kwargs(settings, head_modules, device) if settings.capabilities.base_4bit else {}


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


def save_pretrained(model, out_dir: Path, head_modules, state_dict=None) -> None:
    """peft models write adapter_config.json + adapter_model.safetensors; plain models a full checkpoint.
    `state_dict`: the weights to write instead of the model's own (gathered from shards: run/gather.py)."""
    model.save_pretrained(out_dir, **({} if state_dict is None else {"state_dict": state_dict}))


def save_parallel(model, out_dir: Path, head_modules, state_dict=None) -> None:
    parallel_adapter.save_parallel_adapters(model, out_dir, head_modules, state_dict)


def load_peft_adapter(base, folder: Path):
    return name_loaded_adalora_adapter(peft.PeftModel.from_pretrained(base, folder))


def load_parallel(base, folder: Path):
    return parallel_adapter.load_parallel_adapters(base, folder)


def load_full_model(base, folder: Path):
    return type(base).from_pretrained(folder)


def _no_load_kwargs(settings, head_modules, device=None) -> dict:
    return {}


@dataclass(frozen=True)
class Method:
    apply: Callable
    save: Callable = save_pretrained
    load: Callable = load_peft_adapter  # (fresh base, adapter folder) -> trained model
    load_kwargs: Callable = _no_load_kwargs  # extra from_pretrained arguments (a 4-bit base: quantization_config)
    whole_model: bool = False  # save writes every weight, frozen ones too (a gather from shards must fetch them)


# Validated settings type (config/peft_schema.py, method_schema.py) -> builder. Every peft method shares one.
METHODS: dict[type, Method] = {
    PeftSettings: Method(apply_peft, load_kwargs=peft_load_kwargs),
    ParallelAdapterSettings: Method(apply_parallel_adapters, save=save_parallel, load=load_parallel),
    FullSettings: Method(apply_full, load=load_full_model, whole_model=True),
    HeadOnlySettings: Method(apply_head_only, load=load_full_model, whole_model=True),
    NoMethodSettings: Method(apply_none, save=lambda model, out_dir, head, state_dict=None: None, load=load_none),
}


def load_kwargs_for(settings, head_modules, device: torch.device | None = None) -> dict:
    """Extra from_pretrained arguments of the method; `device` is where this process trains (None: not known)."""
    return METHODS[type(settings)].load_kwargs(settings, head_modules, device)


def apply_method(model: torch.nn.Module, settings, head_modules: list[str], shape: str) -> torch.nn.Module:
    """Return the model ready to train with the method `settings` describe (validated beforehand)."""
    return METHODS[type(settings)].apply(model, settings, head_modules, shape)


def saves_whole_model(settings) -> bool:
    return METHODS[type(settings)].whole_model


def save_trained(model: torch.nn.Module, settings, head_modules: list[str], out_dir: Path, state_dict=None) -> None:
    """adapter/ in the method's format; `state_dict`: weights gathered from shards, written instead of the model's."""
    out_dir.mkdir(parents=True, exist_ok=True)
    METHODS[type(settings)].save(model, out_dir, head_modules, state_dict)


def load_trained(base: torch.nn.Module, settings, folder: Path) -> torch.nn.Module:
    """Put what save_trained wrote back onto a fresh base (for QLoRA: a freshly quantised one)."""
    return METHODS[type(settings)].load(base, Path(folder))


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

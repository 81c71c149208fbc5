"""Workarounds for upstream releases we support: each says which versions it covers and when it can go.

Kept in one place so a dependency bump means reading one file (tests/test_compat.py proves each one is needed
or harmless on the installed versions).
"""

import functools
import importlib.abc
import importlib.machinery
import inspect
import logging
import sys
import types
import warnings
from typing import Any


def prepare_process() -> None:
    """What every command line (train, evaluate, launch, serve, export) runs first."""
    hide_bitsandbytes()
    quiet_upstream_notices()
    list_transformers_models_once()


TRANSFORMERS_IMPORT_UTILS = "transformers.utils.import_utils"


def list_transformers_models_once() -> None:
    """transformers 5.24 lists its model folders twice a process, once when `transformers` is imported and again when
    `transformers.models` is (each __init__ calls define_import_structure on models/: ~560 folders, ~1,700 files read
    for their `__all__`). Its create_import_structure_from_path is lru_cache'd with the default 128 entries, so the
    second walk misses every folder: 0.25 s of every command on 2 cores. Here the cache has no bound, set as the
    module loads (a finder wraps its execution, before transformers' __init__ walks the folders), and the second walk
    reads nothing. No-op once transformers is imported, or if the function is no longer an lru_cache. Can go when
    transformers caches every folder.
    """
    if TRANSFORMERS_IMPORT_UTILS in sys.modules or any(isinstance(f, _UnboundedListing) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _UnboundedListing())


class _UnboundedListing(importlib.abc.MetaPathFinder):
    """Finds transformers.utils.import_utils as the path finder does, and unbounds its cache once it has run."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != TRANSFORMERS_IMPORT_UTILS:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module: types.ModuleType) -> None:
            run(module)
            listing = getattr(module, "create_import_structure_from_path", None)
            walk = getattr(listing, "__wrapped__", None)
            if walk is not None and hasattr(listing, "cache_info") and listing.cache_info().maxsize is not None:
                module.create_import_structure_from_path = functools.cache(walk)  # its recursion reads the global

        spec.loader.exec_module = exec_module
        return spec


class _DropLightningNotices(logging.Filter):
    NOTICES = ("litlogger", "Skipping setting a default `ModelSummary`")

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(notice in record.getMessage() for notice in self.NOTICES)


def quiet_upstream_notices() -> None:
    """Notices printed on every run that ask nothing of our users (each from the named upstream version):
    - Lightning 2.6: "Tip: ... try installing litlogger" (an advert, at every Trainer start), and "Skipping setting a
      default `ModelSummary`" (we configure our own, callbacks.model_summary);
    - transformers 5.24 FutureWarning "`is_gradient_checkpointing` is deprecated", raised by peft 0.21's own calls;
    - torch 2.13 "`isinstance(treespec, LeafSpec)` is deprecated", raised inside Lightning 2.6's _pytree.
    """
    rank_zero = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _DropLightningNotices) for f in rank_zero.filters):
        rank_zero.addFilter(_DropLightningNotices())
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


# Availability checks that transformers / peft cache: cleared when bitsandbytes becomes visible again.
_CACHED_BNB_CHECKS = (
    ("transformers.utils.import_utils", "is_bitsandbytes_available"),
    ("peft.import_utils", "is_bnb_4bit_available"),
)


def hide_bitsandbytes() -> None:
    """Our command lines call this first: bitsandbytes then looks absent until QLoRA asks for it.

    peft 0.21 imports bitsandbytes whenever it is installed: at `import peft` (peft/helpers.py, for a helper we never
    call) and when LoRA layers are created (its 8-bit/4-bit dispatchers). That costs ~2.3 s on 2 cores per run and,
    on CPUs with AVX512-BF16, prints "Failed to load CPU gemm_4bit_forward from kernels-community" (bitsandbytes 0.50
    tries to fetch a hub kernel). `None` in sys.modules is Python's own "not importable" mark, so peft and
    transformers see no bitsandbytes. No-op if it is already imported. Can go when peft imports it lazily.
    """
    sys.modules.setdefault("bitsandbytes", None)


def reveal_bitsandbytes() -> None:
    """Undo hide_bitsandbytes (QLoRA is asked for), including the availability answers cached meanwhile."""
    if "bitsandbytes" in sys.modules and sys.modules["bitsandbytes"] is None:
        del sys.modules["bitsandbytes"]
        for module, name in _CACHED_BNB_CHECKS:
            check = getattr(sys.modules.get(module), name, None)
            if hasattr(check, "cache_clear"):
                check.cache_clear()


def _forward_with_past_key_values(cls: type):
    """cls.forward that also takes `past_key_values` (passed on as `cache`), with a signature that shows it."""

    def forward(self, *args, past_key_values=None, **kwargs):
        if past_key_values is not None:
            kwargs.setdefault("cache", past_key_values)
        return cls.forward(self, *args, **kwargs)

    signature = inspect.signature(cls.forward)
    params = list(signature.parameters.values())
    tail = [p for p in params if p.kind is inspect.Parameter.VAR_KEYWORD]
    alias = inspect.Parameter("past_key_values", inspect.Parameter.KEYWORD_ONLY, default=None)
    forward.__signature__ = signature.replace(parameters=[*(p for p in params if p not in tail), alias, *tail])
    return forward


def expose_past_key_values(model):
    """transformers 5.24 renamed `forward(past_key_values=)` to `forward(cache=)` (the old name is a deprecated alias
    until 5.40); peft 0.21.2's prefix tuning looks `past_key_values` up in the forward *signature* of the model and of
    its backbone and refuses ("Model does not support past key values ...") when it is not there. Give those two
    forwards a visible `past_key_values` that is passed on as `cache`, so prefix tuning runs as on 5.23.
    Bound per instance (types.MethodType), so a deep copy rebinds to the copy. No-op before 5.24.
    """
    for module in (model, *model.children()):
        params = inspect.signature(module.forward).parameters
        if "cache" in params and "past_key_values" not in params:
            module.forward = types.MethodType(_forward_with_past_key_values(type(module)), module)
    if "cache" in inspect.signature(getattr(model, "prepare_inputs_for_generation", len)).parameters:
        model.prepare_inputs_for_generation = types.MethodType(_inputs_with_past_key_values(type(model)), model)
    return model


def _inputs_with_past_key_values(cls: type):
    """Generation under 5.24 keeps the cache as model input `cache`; peft 0.21.2's prefix tuning reads and writes
    `past_key_values` there. Without the rename it finds no cache, injects its prefix as `past_key_values`, and the
    forward then uses the empty `cache` instead: generation silently ignores the trained prefix (its first-step
    logits differ from the forward pass by ~0.5 on a twin; identical on 5.23). The forward alias above maps it back.
    """

    def prepare_inputs_for_generation(self, *args, **kwargs):
        inputs = cls.prepare_inputs_for_generation(self, *args, **kwargs)
        if "cache" in inputs:
            inputs["past_key_values"] = inputs.pop("cache")
        return inputs

    return prepare_inputs_for_generation


def keep_exact_4bit_layout(model):
    """bitsandbytes 0.50 on a CPU with AVX512-BF16 repacks a Linear4bit's weight *in place* into a bf16-kernel layout
    on its first forward in eval mode with an input that needs no grad (a validation step, or layer 0 under LoRA).
    The frozen 4-bit data then change (shape and bytes), later training steps run the inference kernel, and logits
    differ from the de-quantised base by ~1e-3 (bf16). Switching that per-layer flag off keeps the exact layout and
    de-quantise + matmul path every other CPU and every GPU uses. No-op for models without 4-bit layers.
    """
    for module in model.modules():
        if getattr(module, "support_avx512bf16_for_cpu", False):
            module.support_avx512bf16_for_cpu = False
    return model


def use_bitsandbytes() -> None:
    """QLoRA asks for bitsandbytes: make it importable, and quiet one notice.

    Its "Failed to load CPU gemm_4bit_forward from kernels-community" is about the repacked layout's kernel, which
    keep_exact_4bit_layout switches off (and which would come from the hub, unreachable offline). Other bitsandbytes
    messages still show.
    """
    reveal_bitsandbytes()
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


def name_loaded_adalora_adapter(model):
    """peft 0.21.2: an AdaLoRA adapter loaded with PeftModel.from_pretrained has no `trainable_adapter_name`, which
    AdaLoraModel.forward reads whenever the output has a loss (an AttributeError in every validation step of
    evaluate.py). Naming the loaded adapter gives evaluation the loss training validated with (orthogonal term
    included). No-op for every other method; can go when peft sets it on load.
    """
    tuner = getattr(model, "base_model", None)
    if type(tuner).__name__ == "AdaLoraModel" and "trainable_adapter_name" not in vars(tuner):
        tuner.trainable_adapter_name = model.active_adapter
    return model

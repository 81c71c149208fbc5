"""format=gguf (the merged model as one .gguf) and format=gguf_lora (the LoRA adapter alone), each proven by reading
the file back before it is kept: the merged file through transformers' own GGUF import (the path peftlab's SmolLM2
comes in by), the adapter by putting its de-quantised A and B back onto the base. The figures go into the card.
"""

import functools
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np
import torch
import transformers

from peftlab.config import RunSettings
from peftlab.config.tasks import CAUSAL_SHAPES
from peftlab.errors import ConfigError
from peftlab.export.gguf_writer import (
    gguf_dtype,
    gguf_family,
    lora_pairs,
    write_gguf_lora,
    write_gguf_model,
)
from peftlab.export.merge import PROBE_TEXTS, load_run_model, merge_peft, probe_batch, probe_logits, reload_whole
from peftlab.models.loading import load_tokenizer
from peftlab.offline.gguf import locate_gguf

log = logging.getLogger(__name__)

GGUF_FORMATS = ("gguf", "gguf_lora")
LORA_CONFIG = "peft.LoraConfig"  # the methods whose adapter is A and B per layer (lora, qlora, rslora, pissa, ...)
DEFAULT_PRE = "default"  # llama.cpp's generic pre-tokenizer: it loads, with a warning that quality may suffer


@dataclass
class GGUFExport:
    """The written file and what reading it back measured (merged vs read-back logits on the probe sentences)."""

    file: Path
    dtype: str
    tensor_types: dict[str, int]  # GGML type -> how many tensors were written in it
    max_logit_diff: float
    top1_agreement: float  # share of probe positions whose arg-max token is the same
    same_token_ids: bool | None = None  # merged file: its tokenizer encodes the probes to the same ids
    chat_template_kept: bool | None = None
    notes: list[str] = field(default_factory=list)

    def card_notes(self) -> list[str]:
        types = ", ".join(f"{n} {t}" for t, n in sorted(self.tensor_types.items()))
        check = (
            "the file read back through transformers' GGUF import"
            if self.same_token_ids is not None
            else ("the file's A and B de-quantised and added to the base weights")
        )
        lines = [
            *self.notes,
            f"tensors: {types}",
            f"read-back check ({check}) vs the model before writing, on {len(PROBE_TEXTS)} probe sentences: "
            f"max |logit difference| {self.max_logit_diff:.3g}, top-1 agreement {self.top1_agreement:.4f}",
        ]
        if self.same_token_ids is not None:
            lines.append(f"tokenizer read back: same token ids {self.same_token_ids}, chat template kept "
                         f"{self.chat_template_kept}")  # fmt: skip
        return lines


def check_gguf_request(settings: RunSettings, fmt: str, dtype: str, mergeable: bool) -> str:
    """One line naming what a GGUF export cannot do for this run; else the normalised dtype (f16, q8_0, ...)."""
    if settings.shape not in CAUSAL_SHAPES:
        raise ConfigError(f"format={fmt}: llama.cpp runs causal LMs; this run's task shape is {settings.shape}")
    if fmt == "gguf" and not mergeable:
        raise ConfigError(f"format=gguf: peft={settings.peft.method} cannot be merged; use format=hf merge=false")
    if fmt == "gguf_lora" and settings.peft._target_ != LORA_CONFIG:
        raise ConfigError(f"format=gguf_lora: peft={settings.peft.method} is not LoRA; use format=gguf (merged)")
    return gguf_dtype(dtype)


def source_pre(settings: RunSettings) -> str:
    """llama.cpp's pre-tokenizer name: the one in the GGUF the base came from, else llama.cpp's default."""
    if not settings.model.gguf:
        log.warning("format=gguf: the base did not come from a GGUF; tokenizer.ggml.pre=%s", DEFAULT_PRE)
        return DEFAULT_PRE
    path = locate_gguf(**dict(settings.model.gguf))
    return gguf_pre(path, path.stat().st_mtime_ns)


@functools.cache  # per file and process: exporting several dtypes (bench/gguf_roundtrip.py) parses the source once
def gguf_pre(path: Path, mtime_ns: int) -> str:
    """The `tokenizer.ggml.pre` of a GGUF file. gguf's reader parses every field to give one: for SmolLM2 its
    49 k-token vocabulary and merges, seconds on 2 CPU cores."""
    pre = gguf.GGUFReader(path).fields.get("tokenizer.ggml.pre")
    return pre.contents() if pre is not None else DEFAULT_PRE


def count_types(written: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for qtype in written.values():
        counts[qtype] = counts.get(qtype, 0) + 1
    return counts


def agreement(logits: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    keep = mask.bool()
    diff = float((logits - reference).abs()[keep].max())
    top1 = float((logits.argmax(-1) == reference.argmax(-1))[keep].float().mean())
    return diff, top1


def export_merged_gguf(settings: RunSettings, adapter: Path, folder: Path, dtype: str) -> GGUFExport:
    merger = merge_peft if settings.peft.capabilities.adapter == "peft" else reload_whole
    merged = merger(settings, adapter, "float32")
    model, tokenizer = merged.model.eval(), merged.tokenizer
    gguf_family(model.config)
    name = f"{settings.model.name}-{settings.peft.method}-{dtype}.gguf"
    scratch = folder / ".tokenizer"
    tokenizer.save_pretrained(scratch)
    try:
        written = write_gguf_model(model, tokenizer, scratch, folder / name, dtype, name[:-5], source_pre(settings))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    batch = probe_batch(tokenizer, settings.shape)
    read_tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    read_model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    diff, top1 = agreement(probe_logits(read_model, batch), probe_logits(model, batch), batch["attention_mask"])
    same_ids = all(read_tokenizer(t)["input_ids"] == tokenizer(t)["input_ids"] for t in PROBE_TEXTS)
    return GGUFExport(
        file=folder / name,
        dtype=dtype,
        tensor_types=count_types(written),
        max_logit_diff=diff,
        top1_agreement=top1,
        same_token_ids=same_ids,
        chat_template_kept=read_tokenizer.chat_template == tokenizer.chat_template,
        notes=[merged.precision_note + f"; written as GGUF {dtype}"],
    )


def lora_from_file(path: Path) -> tuple[float, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """(alpha, {GGUF base tensor name: (A, B)}) de-quantised from a GGUF LoRA file."""
    reader = gguf.GGUFReader(path)
    alpha = float(reader.fields[gguf.Keys.Adapter.LORA_ALPHA].contents())
    tensors = {t.name: gguf.quants.dequantize(t.data, t.tensor_type) for t in reader.tensors}
    bases = {name.rsplit(".", 1)[0] for name in tensors}
    return alpha, {base: (tensors[f"{base}.lora_a"], tensors[f"{base}.lora_b"]) for base in bases}


@torch.no_grad()
def logits_with_file_lora(peft_model, alpha: float, from_file: dict, batch: dict) -> torch.Tensor:
    """The base's logits with each layer's delta rebuilt from the file's A and B (alpha / rank · B·A, B's rows back
    in transformers' order) added to its weights; the weights are restored afterwards."""
    config = peft_model.base_model.model.config
    family = gguf_family(config)
    names = gguf.get_tensor_name_map(family.arch, config.num_hidden_layers)
    originals = {}
    with peft_model.disable_adapter():
        base = peft_model.base_model.model
        try:
            for hf_name, *_ in lora_pairs(peft_model):
                a, b = from_file[names.get_name(hf_name, try_suffixes=(".weight",))]
                b = restore_rows(family, hf_name, b, config)
                weight = base.get_submodule(hf_name.removesuffix(".weight")).base_layer.weight
                originals[hf_name] = weight.detach().clone()
                weight += torch.from_numpy(alpha / a.shape[0] * (b @ a)).to(weight.dtype)
            return probe_logits(base, batch)
        finally:
            for hf_name, weight in originals.items():
                base.get_submodule(hf_name.removesuffix(".weight")).base_layer.weight.copy_(weight)


def export_lora_gguf(settings: RunSettings, adapter: Path, folder: Path, dtype: str) -> GGUFExport:
    tokenizer = load_tokenizer(settings.model)
    peft_model = load_run_model(settings, adapter, tokenizer, dequantise=True)
    name = f"{settings.model.name}-{settings.peft.method}-adapter-{dtype}.gguf"
    written = write_gguf_lora(peft_model, folder / name, dtype, name[:-5])
    batch = probe_batch(tokenizer, settings.shape)
    reference = probe_logits(peft_model, batch)
    alpha, layers = lora_from_file(folder / name)
    logits = logits_with_file_lora(peft_model, alpha, layers, batch)
    diff, top1 = agreement(logits, reference, batch["attention_mask"])
    return GGUFExport(
        file=folder / name,
        dtype=dtype,
        tensor_types=count_types(written),
        max_logit_diff=diff,
        top1_agreement=top1,
        notes=[f"LoRA adapter alone (alpha {alpha:g}, {len(layers)} layers), written as GGUF {dtype}"],
    )


def restore_rows(family, hf_name: str, rows: np.ndarray, config) -> np.ndarray:
    """The inverse of the family's row order (applying it to an identity tells where each row went)."""
    order = family.rows(hf_name, np.arange(rows.shape[0])[:, None], config)[:, 0]
    restored = np.empty_like(rows)
    restored[order] = rows
    return restored


def export_gguf(settings: RunSettings, adapter: Path, folder: Path, fmt: str, dtype: str) -> GGUFExport:
    exporter = export_merged_gguf if fmt == "gguf" else export_lora_gguf
    result = exporter(settings, adapter, folder, dtype)
    log.info(
        "%s: read back, max |logit diff| %.3g, top-1 agreement %.4f on %d probe sentences",
        result.file.name,
        result.max_logit_diff,
        result.top1_agreement,
        len(PROBE_TEXTS),
    )
    return result

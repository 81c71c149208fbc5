"""A merged Llama-architecture model, or its LoRA adapter alone, written as GGUF (llama.cpp, Ollama, LM Studio).

Why by hand: the `gguf` package gives the file writer, the tensor-name map, the numpy quantisers and the vocabulary
readers, but the step from a transformers model to those calls lives only in llama.cpp's conversion scripts, which are
not a library. What this module adds is that step for one family, stated in one table (GGUF_FAMILIES): the
hyper-parameters llama.cpp reads, and the q/k row order llama.cpp's rotary embedding expects (its rotation pairs
neighbouring rows; transformers' pairs row i with row i + head_dim/2), which transformers' GGUF reader undoes on
import (LlamaTensorProcessor) and we therefore apply on export.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import torch

from peftlab.errors import ConfigError

Q = gguf.GGMLQuantizationType
# dtype= of format=gguf/gguf_lora -> (the type of 2-D weights, the file type llama.cpp reports). Norms and other
# 1-D tensors stay F32 (llama.cpp's own rule); the quantised types need rows that are a whole number of blocks
# (32 values), else that tensor is written F16.
GGUF_DTYPES: dict[str, tuple[gguf.GGMLQuantizationType, gguf.LlamaFileType]] = {
    "f32": (Q.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (Q.F16, gguf.LlamaFileType.MOSTLY_F16),
    "bf16": (Q.BF16, gguf.LlamaFileType.MOSTLY_BF16),
    "q8_0": (Q.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
    "q5_1": (Q.Q5_1, gguf.LlamaFileType.MOSTLY_Q5_1),
    "q5_0": (Q.Q5_0, gguf.LlamaFileType.MOSTLY_Q5_0),
    "q4_1": (Q.Q4_1, gguf.LlamaFileType.MOSTLY_Q4_1),
    "q4_0": (Q.Q4_0, gguf.LlamaFileType.MOSTLY_Q4_0),
}
GGUF_DTYPE_ALIASES = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}
# Below 8 bits the token embedding (also the output layer when tied) is kept at Q8_0, as in SmolLM2's own Q4_1 file.
EMBEDDING = "token_embd.weight"
LOW_BIT = {Q.Q5_1, Q.Q5_0, Q.Q4_1, Q.Q4_0}


def llama_rope_order(weights: np.ndarray, n_head: int) -> np.ndarray:
    """q_proj / k_proj rows in llama.cpp's rotary order (the inverse of transformers' reverse_permute_weights)."""
    dim = weights.shape[0] // n_head // 2
    return weights.reshape(n_head, 2, dim, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def llama_hparams(writer: gguf.GGUFWriter, config) -> None:
    if getattr(config, "rope_scaling", None) and config.rope_scaling.get("rope_type", "default") != "default":
        raise ConfigError(f"format=gguf: rope_scaling={config.rope_scaling} is not written yet (plain RoPE only)")
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    rope_theta = getattr(config, "rope_theta", None) or (config.rope_parameters or {}).get("rope_theta", 10000.0)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(float(rope_theta))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(config.vocab_size)


def llama_rows(hf_name: str, weights: np.ndarray, config) -> np.ndarray:
    if ".q_proj." in hf_name:
        return llama_rope_order(weights, config.num_attention_heads)
    if ".k_proj." in hf_name:
        return llama_rope_order(weights, config.num_key_value_heads)
    return weights


@dataclass(frozen=True)
class GGUFFamily:
    """What llama.cpp needs of one transformers model family."""

    arch: gguf.MODEL_ARCH
    hparams: Callable[[gguf.GGUFWriter, object], None]
    rows: Callable[[str, np.ndarray, object], np.ndarray]  # row order of a weight (by its transformers name)


# config.model_type -> its GGUF family. Others are refused in one line until written (and round-trip tested).
GGUF_FAMILIES = {"llama": GGUFFamily(gguf.MODEL_ARCH.LLAMA, llama_hparams, llama_rows)}


def gguf_family(config) -> GGUFFamily:
    family = GGUF_FAMILIES.get(config.model_type)
    if family is None:
        allowed = ", ".join(GGUF_FAMILIES)
        raise ConfigError(f"format=gguf: model_type={config.model_type} is not supported yet (supported: {allowed})")
    return family


def gguf_dtype(dtype: str) -> str:
    name = GGUF_DTYPE_ALIASES.get(dtype, dtype)
    if name not in GGUF_DTYPES:
        raise ConfigError(f"dtype={dtype}: for GGUF allowed are {', '.join(GGUF_DTYPES)}")
    return name


def encode_tensor(name: str, weights: np.ndarray, dtype: str) -> tuple[np.ndarray, gguf.GGMLQuantizationType]:
    """The bytes (or float array) of one tensor in the requested type, by llama.cpp's rules (GGUF_DTYPES)."""
    qtype = GGUF_DTYPES[dtype][0]
    if weights.ndim < 2:
        qtype = Q.F32
    elif name == EMBEDDING and qtype in LOW_BIT:
        qtype = Q.Q8_0
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if weights.shape[-1] % block:
        qtype = Q.F16
    if qtype == Q.F32:
        return weights.astype(np.float32), qtype
    if qtype == Q.F16:
        return weights.astype(np.float16), qtype
    return gguf.quants.quantize(weights.astype(np.float32), qtype), qtype


def gguf_tensor_name(names: gguf.TensorNameMap, hf_name: str) -> str:
    name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
    if name is None:
        raise ConfigError(f"format=gguf: no GGUF name for the weight {hf_name}")
    return name


def add_tokenizer(writer: gguf.GGUFWriter, tokenizer, folder: Path, pre: str) -> None:
    """Vocabulary, token types, merges, special ids and chat template, as llama.cpp's converter writes them.

    Token types follow the tokenizer's added tokens: special ones CONTROL (never printed, parsed as one token),
    other added ones USER_DEFINED, the rest NORMAL. `folder` holds the tokenizer saved by save_pretrained (gguf's
    SpecialVocab reads the merges, special ids and chat template from it)."""
    model = json.loads((folder / "tokenizer.json").read_text())["model"]
    if model.get("type") != "BPE":
        raise ConfigError(f"format=gguf: a {model.get('type')} tokenizer is not written yet (byte-level BPE only)")
    added = tokenizer.added_tokens_decoder
    size = max(len(tokenizer), max(added, default=-1) + 1)
    tokens = tokenizer.convert_ids_to_tokens(list(range(size)))
    types = [
        (gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        if i in added
        else gguf.TokenType.NORMAL
        for i in range(size)
    ]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    gguf.SpecialVocab(folder, load_merges=True, n_vocab=size).add_to_gguf(writer, quiet=True)


def write_tensors(writer: gguf.GGUFWriter, path: Path) -> None:
    writer.write_header_to_file(path=path)
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_gguf_model(model, tokenizer, tokenizer_folder: Path, path: Path, dtype: str, name: str, pre: str) -> dict:
    """The merged causal LM `model` as one GGUF file at `path`; returns {GGUF tensor name: type written}."""
    config = model.config
    family = gguf_family(config)
    names = gguf.get_tensor_name_map(family.arch, config.num_hidden_layers)
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[family.arch])
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    family.hparams(writer, config)
    writer.add_file_type(GGUF_DTYPES[dtype][1])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    add_tokenizer(writer, tokenizer, tokenizer_folder, pre)
    written = {}
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp uses token_embd for the output layer when output.weight is absent
        weights = family.rows(hf_name, tensor.detach().float().cpu().numpy(), config)
        gguf_name = gguf_tensor_name(names, hf_name)
        data, qtype = encode_tensor(gguf_name, weights, dtype)
        writer.add_tensor(gguf_name, data, raw_dtype=qtype)
        written[gguf_name] = qtype.name
    write_tensors(writer, path)
    return written


def lora_pairs(peft_model) -> list[tuple[str, torch.Tensor, torch.Tensor, float]]:
    """(transformers weight name, A (r, in), B (out, r), scaling) of every LoRA layer of a peft model."""
    from peft.tuners.lora import LoraLayer

    pairs = []
    for module_name, module in peft_model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        adapter = module.active_adapters[0]
        if adapter not in module.lora_A:
            continue
        if module.use_dora.get(adapter):
            raise ConfigError("format=gguf_lora: DoRA has no GGUF LoRA form; export format=gguf (merged) instead")
        hf_name = module_name.removeprefix("base_model.model.") + ".weight"
        a = module.lora_A[adapter].weight.detach().float()
        b = module.lora_B[adapter].weight.detach().float()
        pairs.append((hf_name, a, b, float(module.scaling[adapter])))
    return pairs


def write_gguf_lora(peft_model, path: Path, dtype: str, name: str) -> dict:
    """The LoRA adapter of `peft_model` as a GGUF LoRA (llama.cpp `--lora`, Ollama `ADAPTER`); returns what it wrote.

    llama.cpp scales B·A by alpha / rank; peft's scaling (alpha / r, or alpha / sqrt(r) for rsLoRA) is written as
    alpha = scaling * r so either variant runs as trained. B's rows get the base weight's row order (q/k)."""
    config = peft_model.base_model.model.config
    family = gguf_family(config)
    names = gguf.get_tensor_name_map(family.arch, config.num_hidden_layers)
    pairs = lora_pairs(peft_model)
    if not pairs:
        raise ConfigError("format=gguf_lora: the run's adapter holds no LoRA layer; export format=gguf (merged)")
    scalings = {round(scaling * a.shape[0], 6) for _, a, _, scaling in pairs}
    if len(scalings) > 1:
        raise ConfigError(f"format=gguf_lora: layers differ in alpha ({sorted(scalings)}); GGUF LoRA has one alpha")
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[family.arch])
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_name(name)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, scalings.pop())
    written = {}
    for hf_name, a, b, _ in pairs:
        base = gguf_tensor_name(names, hf_name)
        for suffix, weights in (("lora_a", a.numpy()), ("lora_b", family.rows(hf_name, b.numpy(), config))):
            data, qtype = encode_tensor(f"{base}.{suffix}", weights, dtype)
            writer.add_tensor(f"{base}.{suffix}", data, raw_dtype=qtype)
            written[f"{base}.{suffix}"] = qtype.name
    write_tensors(writer, path)
    return written

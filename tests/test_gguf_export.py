"""GGUF export (format=gguf, format=gguf_lora) on the SmolLM2 twin: Llama's classes and SmolLM2's real tokenizer.

Every file is read back before it is kept (peftlab/export/gguf_export.py); these tests read it back again on their
own, through transformers' GGUF import and gguf's reader, and compare with the run's model.
"""

import functools
import os
import re

import gguf
import numpy as np
import pytest
import torch
import transformers
from conftest import compose_config, shared_split_dir

from peftlab.errors import ConfigError
from peftlab.export import export_run
from peftlab.export.gguf_writer import llama_rope_order
from peftlab.run import fit

TINY = ["dataset.max_train_rows=32", "dataset.max_eval_rows=8", "trainer.max_epochs=1", "peft.lr=3e-2"]
PROMPTS = ["SELECT name FROM players WHERE number = 7", "How many goals did the team score in 2010?"]
# f32: the same float32 weights, q/k rows permuted and back: only the order of summation may differ (measured 0.0).
F32_ATOL = 1e-4
# f16 weights round each value to 11 bits of mantissa: measured 2.5e-3 on this twin's logits.
F16_ATOL = 2e-2


@pytest.fixture(scope="module", autouse=True)
def each_gguf_file_parsed_once():
    """A gguf.GGUFReader per unchanged file (path, size, mtime) in this module: transformers' GGUF import builds one
    for the config, the tokenizer and the model of each from_pretrained (7 in a read-back test), and each parses
    SmolLM2's 49 k tokens and merges again (~3 s). The files, and what is read from them, are the same."""
    build = gguf.GGUFReader

    @functools.cache
    def parsed(path: str, mode: str, stamp: tuple) -> gguf.GGUFReader:
        return build(path, mode)

    def reader(path, mode="r"):
        stat = os.stat(path)
        return parsed(os.path.realpath(path), mode, (stat.st_size, stat.st_mtime_ns))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gguf, "GGUFReader", reader)
        yield


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """peft method -> a trained SmolLM2-twin SQL run folder (each trained once per module)."""
    sql = shared_split_dir("text2sql_wikisql")
    made = {}

    def _run(method: str, *overrides: str):
        if (method, overrides) not in made:
            out = tmp_path_factory.mktemp(method)
            cfg = compose_config(["model=smollm2_tiny", "dataset=sql", f"dataset.data_dir={sql}", f"peft={method}",
                                  *TINY, *overrides], output_dir=out)  # fmt: skip
            made[(method, overrides)] = fit(cfg)
        return made[(method, overrides)]

    return _run


@pytest.fixture(scope="module")
def merged_exports(runs, tmp_path_factory):
    """dtype -> the LoRA run's merged GGUF export (each written once per module: the q8_0 test reads the f32 one's
    size; an export of SmolLM2's 49 k-token vocabulary reads back in seconds)."""

    @functools.cache
    def _export(dtype: str):
        return export_run(runs("lora").output_dir, tmp_path_factory.mktemp(dtype) / "out", format="gguf", dtype=dtype)

    return _export


def merged_model(result):
    from peftlab.export.merge import merge_peft

    return merge_peft(result.settings, result.output_dir / "adapter", "float32")


def logits(model, tokenizer, texts=PROMPTS) -> torch.Tensor:
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model.eval()(**batch).logits, batch["attention_mask"].bool()


@pytest.mark.parametrize(("dtype", "atol"), [("f32", F32_ATOL), ("f16", F16_ATOL)])
def test_merged_gguf_reads_back_with_the_merged_logits_tokens_and_chat_template(runs, merged_exports, dtype, atol):
    result = runs("lora")
    exported = merged_exports(dtype)
    file = exported.gguf.file
    assert file.parent == exported.out and file.suffix == ".gguf"
    assert {"README.md", "Modelfile", file.name} == {p.name for p in file.parent.iterdir()}
    merged = merged_model(result)
    read = transformers.AutoModelForCausalLM.from_pretrained(file.parent, gguf_file=file.name, dtype=torch.float32)
    read_tokenizer = transformers.AutoTokenizer.from_pretrained(file.parent, gguf_file=file.name)
    expected, mask = logits(merged.model, merged.tokenizer)
    got, _ = logits(read, merged.tokenizer)
    assert (got - expected).abs()[mask].max() <= atol
    for text in PROMPTS:
        assert read_tokenizer(text).input_ids == merged.tokenizer(text).input_ids
    assert read_tokenizer.chat_template == merged.tokenizer.chat_template
    assert read_tokenizer.eos_token == merged.tokenizer.eos_token == "<|im_end|>"
    # the export's own check says the same, and the card and Modelfile say how to run the file
    assert exported.gguf.max_logit_diff <= atol and exported.gguf.same_token_ids and exported.gguf.chat_template_kept
    assert f"llama-cli -m {file.name}" in (file.parent / "README.md").read_text()
    assert (file.parent / "Modelfile").read_text() == f"FROM ./{file.name}\n"


def test_q8_0_gguf_holds_q8_0_matrices_and_f32_norms_and_keeps_the_top_token(runs, merged_exports):
    result = runs("lora")
    file = merged_exports("q8_0").gguf.file
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(file).tensors}
    assert types["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.Q8_0
    assert types["blk.0.attn_norm.weight"] == gguf.GGMLQuantizationType.F32
    assert "output.weight" not in types  # tied embeddings: llama.cpp reuses token_embd
    merged = merged_model(result)
    read = transformers.AutoModelForCausalLM.from_pretrained(file.parent, gguf_file=file.name, dtype=torch.float32)
    expected, mask = logits(merged.model, merged.tokenizer)
    got, _ = logits(read, merged.tokenizer)
    # random twin weights give near-flat logits, the hardest case for top-1: measured 0.95 on the probe sentences
    assert (got.argmax(-1) == expected.argmax(-1))[mask].float().mean() >= 0.8
    assert file.stat().st_size < 0.4 * merged_exports("f32").gguf.file.stat().st_size


def test_lora_gguf_holds_a_and_b_per_layer_in_llama_cpp_order(runs, tmp_path):
    result = runs("lora")
    exported = export_run(result.output_dir, tmp_path / "out", format="gguf_lora", dtype="f32")
    reader = gguf.GGUFReader(exported.gguf.file)
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    r, alpha = result.settings.peft.r, result.settings.peft.lora_alpha
    assert reader.fields["adapter.lora.alpha"].contents() == pytest.approx(alpha)  # scale alpha / r, as peft's
    tensors = {t.name: np.asarray(t.data) for t in reader.tensors}
    config = result.module.model.base_model.model.config
    layers = config.num_hidden_layers * len(result.settings.peft.target_modules)
    assert len(tensors) == 2 * layers
    q_proj = result.module.model.base_model.model.model.layers[0].self_attn.q_proj
    a, b = q_proj.lora_A["default"].weight.detach(), q_proj.lora_B["default"].weight.detach()
    assert np.array_equal(tensors["blk.0.attn_q.weight.lora_a"], a.numpy())
    heads = config.num_attention_heads
    assert np.array_equal(tensors["blk.0.attn_q.weight.lora_b"], llama_rope_order(b.numpy(), heads))
    assert tensors["blk.0.attn_q.weight.lora_a"].shape == (r, config.hidden_size)
    # the export's own read-back (A and B from the file added onto the base) gives base + adapter's logits
    assert exported.gguf.max_logit_diff <= F32_ATOL


def test_rope_order_is_what_transformers_gguf_import_undoes():
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    weights = np.arange(8 * 6 * 3, dtype=np.float32).reshape(8 * 6, 3)  # 8 heads of 6 rows
    processor = LlamaTensorProcessor(config={"num_attention_heads": 8, "num_key_value_heads": 8})
    back = processor.process(llama_rope_order(weights, 8), "blk.0.attn_q.weight").weights
    assert np.array_equal(back, weights) and not np.array_equal(llama_rope_order(weights, 8), weights)


def test_what_gguf_cannot_hold_is_refused_in_one_line(runs, tmp_path):
    lora = runs("lora").output_dir
    with pytest.raises(ConfigError, match=r"dtype=q3_k: for GGUF allowed are f32, f16, bf16, q8_0"):
        export_run(lora, tmp_path / "a", format="gguf", dtype="q3_k")
    with pytest.raises(ConfigError, match=r"format=onnx: allowed are hf, gguf, gguf_lora"):
        export_run(lora, tmp_path / "b", format="onnx")
    ia3 = runs("ia3").output_dir
    with pytest.raises(ConfigError, match=r"format=gguf_lora: peft=ia3 is not LoRA; use format=gguf \(merged\)"):
        export_run(ia3, tmp_path / "c", format="gguf_lora")
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_a_classifier_and_a_non_llama_family_are_refused(tmp_path):
    cfg = compose_config(["model=smollm2_tiny", "dataset=demo", "peft=lora", *TINY], output_dir=tmp_path / "cls")
    classifier = fit(cfg).output_dir
    with pytest.raises(ConfigError, match=r"format=gguf: llama.cpp runs causal LMs; this run's task shape is classify"):
        export_run(classifier, tmp_path / "a", format="gguf")
    sql = shared_split_dir("text2sql_wikisql")
    cfg = compose_config(["model=gpt2_tiny", "dataset=sql", f"dataset.data_dir={sql}", "peft=lora", *TINY], tmp_path)
    with pytest.raises(ConfigError, match=r"format=gguf: model_type=gpt2 is not supported yet \(supported: llama\)"):
        export_run(fit(cfg).output_dir, tmp_path / "b", format="gguf")


def test_the_export_command_writes_a_gguf_lora_and_prints_its_read_back_check(runs, tmp_path, capsys):
    from hydra import compose, initialize_config_dir

    from peftlab.conf import CONF_DIR
    from peftlab.export.__main__ import export

    overrides = [f"run={runs('lora').output_dir}", f"out={tmp_path / 'out'}", "format=gguf_lora", "dtype=float16"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        export(compose("export", overrides=overrides))
    printed = capsys.readouterr().out
    assert "lora adapter as GGUF: smollm2_tiny-lora-adapter-f16.gguf" in printed  # float16 means f16
    assert re.search(r"read-back check .* max \|logit difference\| [0-9.e-]+, top-1 agreement 1\.0000", printed)

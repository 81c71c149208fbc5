"""DataModule: demo generation, dynamic padding, tokenisation cache, and named errors for bad data."""

import json
import os

import pytest
from conftest import compose_config

from peftlab.config import validate
from peftlab.data.datamodule import TextDataModule
from peftlab.data.encoders import _fast_fingerprint, tokenizer_fingerprint
from peftlab.data.sources import load_split
from peftlab.errors import DataError
from peftlab.models.loading import load_tokenizer
from peftlab.offline.demo import write_demo_sentiment


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    settings = validate(compose_config([], output_dir=tmp_path_factory.mktemp("out")))
    return load_tokenizer(settings.model)


def _settings(tmp_path, overrides):
    return validate(compose_config(overrides, output_dir=tmp_path)).dataset


def test_demo_is_deterministic_balanced_and_labelled_synthetic(tmp_path):
    a = write_demo_sentiment(str(tmp_path / "a"), train_rows=300, validation_rows=50, seed=3)
    b = write_demo_sentiment(str(tmp_path / "b"), train_rows=300, validation_rows=50, seed=3)
    assert (a / "train.jsonl").read_text() == (b / "train.jsonl").read_text()
    rows = [json.loads(line) for line in (a / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 300 and set(rows[0]) == {"sentence", "label", "idx"}
    assert 0.4 < sum(r["label"] for r in rows) / len(rows) < 0.6
    assert any(" not " in r["sentence"] for r in rows)  # negation: keywords alone do not decide the label
    assert "SYNTHETIC" in (a / "README.txt").read_text()


def test_batches_are_padded_to_their_own_longest_row(tmp_path, tokenizer):
    dm = TextDataModule(_settings(tmp_path, ["dataset.batch_size=8"]), tokenizer)
    dm.setup("fit")
    widths = set()
    for i, batch in enumerate(dm.train_dataloader()):
        lengths = batch["attention_mask"].sum(dim=1)
        assert batch["input_ids"].shape[1] == int(lengths.max())  # dynamic padding, not max_length
        assert set(batch) >= {"input_ids", "attention_mask", "labels"}
        widths.add(batch["input_ids"].shape[1])
        if i == 20:
            break
    assert len(widths) > 1


def test_second_setup_hits_tokenisation_cache(tmp_path, tokenizer):
    settings = _settings(tmp_path, [])
    first = TextDataModule(settings, tokenizer)
    first.setup("fit")
    cache_file = first.train_dataset.cache_files[0]["filename"]
    mtime = os.stat(cache_file).st_mtime_ns
    fresh_tokenizer = load_tokenizer(validate(compose_config([], output_dir=tmp_path)).model)  # as a new process has
    second = TextDataModule(settings, fresh_tokenizer)
    second.setup("fit")
    assert second.cache_hits == {"train": True, "validation": True}
    assert second.train_dataset.cache_files[0]["filename"] == cache_file
    assert os.stat(cache_file).st_mtime_ns == mtime  # the map was not recomputed
    assert second.train_dataset["input_ids"][:5] == first.train_dataset["input_ids"][:5]
    # a different max_length is a different tokenisation: computed, not served stale
    third = TextDataModule(_settings(tmp_path, ["dataset.max_length=16"]), tokenizer)
    third.setup("fit")
    assert third.cache_hits["train"] is False
    assert max(len(ids) for ids in third.train_dataset["input_ids"]) <= 16


def test_a_file_is_loaded_once_per_version(tmp_path, write_jsonl):
    """The run's data check, its DataModule and a sweep's later jobs share one load; a rewritten file is read anew."""
    folder = write_jsonl([{"sentence": f"row {i}", "label": i % 2} for i in range(6)])
    settings = _settings(tmp_path, ["dataset=sst2", f"dataset.data_dir={folder}"])
    first, again = load_split(settings, "train"), load_split(settings, "train")
    assert again.dataset is first.dataset and again.origin == first.origin
    write_jsonl([{"sentence": f"new row {i}", "label": 1} for i in range(9)])  # same path, another version
    rewritten = load_split(settings, "train").dataset
    assert rewritten is not first.dataset and rewritten["sentence"][0] == "new row 0" and len(rewritten) == 9
    assert first.dataset["sentence"][0] == "row 0"  # the earlier version's rows are untouched


def test_tokenizer_fingerprint_once_per_state(tmp_path):
    """A sweep's jobs each load the tokenizer: the fingerprint of one state is computed once, a new state anew."""
    model = validate(compose_config([], output_dir=tmp_path)).model
    first, second = load_tokenizer(model), load_tokenizer(model)
    before = _fast_fingerprint.cache_info().hits
    assert tokenizer_fingerprint(first) == tokenizer_fingerprint(second)
    assert _fast_fingerprint.cache_info().hits > before, "the second load's fingerprint came from the first"
    first("a sentence", truncation=True, max_length=4)  # recorded in its state, left out of the fingerprint
    assert tokenizer_fingerprint(first) == tokenizer_fingerprint(second)
    second.add_tokens(["<peftlab-new-token>"])  # another vocabulary: another fingerprint
    assert tokenizer_fingerprint(second) != tokenizer_fingerprint(first)


def test_max_rows_and_string_labels(tmp_path, tokenizer, write_jsonl):
    rows = [{"sentence": f"row {i}", "label": ["negative", "positive"][i % 2]} for i in range(40)]
    folder = write_jsonl(rows)
    settings = _settings(tmp_path, ["dataset=sst2", f"dataset.data_dir={folder}", "dataset.max_train_rows=10"])
    dm = TextDataModule(settings, tokenizer)
    dm.setup("fit")
    assert len(dm.train_dataset) == 10 and len(dm.val_dataset) == 40
    assert sorted(set(dm.val_dataset["labels"])) == [0, 1]


@pytest.mark.parametrize(
    ("train_rows", "message"),
    [
        ([{"text": "no sentence column", "label": 0}], "missing column 'sentence' (columns are: text, label)"),
        (
            [{"sentence": "ok", "label": 0}, {"sentence": "x", "label": "meh"}],
            "row 1, line 2: label 'meh' is not in the label set",
        ),
        (
            [{"sentence": "ok", "label": 0}, {"sentence": "ok", "label": 1}, {"sentence": "ok", "label": -1}],
            "row 2, line 3: label -1 is not in the label set",
        ),
        ([{"sentence": "ok", "label": 0}, {"sentence": None, "label": 1}], "row 1, line 2: 'sentence' is None"),
    ],
)
def test_bad_rows_name_file_and_first_bad_row(tmp_path, tokenizer, write_jsonl, train_rows, message):
    folder = write_jsonl(train_rows, validation=[{"sentence": "fine", "label": 1}])
    dm = TextDataModule(_settings(tmp_path, ["dataset=sst2", f"dataset.data_dir={folder}"]), tokenizer)
    with pytest.raises(DataError) as info:
        dm.prepare_data()
    assert str(info.value).startswith(str(folder / "train.jsonl"))
    assert message in str(info.value)


def test_empty_split_and_missing_file(tmp_path, tokenizer, write_jsonl):
    folder = write_jsonl([{"sentence": "ok", "label": 0}], validation=[])
    settings = _settings(tmp_path, ["dataset=sst2", f"dataset.data_dir={folder}"])
    with pytest.raises(DataError, match=r"validation\.jsonl: the split is empty"):
        TextDataModule(settings, tokenizer).prepare_data()
    (folder / "validation.jsonl").unlink()
    with pytest.raises(DataError, match="no 'validation' split file"):
        TextDataModule(settings, tokenizer).prepare_data()


def test_csv_files_are_read_too(tmp_path, tokenizer):
    folder = tmp_path / "csvdata"
    folder.mkdir()
    for split in ("train", "validation"):
        (folder / f"{split}.csv").write_text("sentence,label\ngood film,1\nbad film,0\nodd film,5\n")
    settings = _settings(tmp_path, ["dataset=sst2", f"dataset.data_dir={folder}"])
    with pytest.raises(DataError, match=r"train.csv: row 2, line 4: label 5"):
        TextDataModule(settings, tokenizer).prepare_data()


def test_length_grouped_batches_pad_less_and_still_visit_every_row(tmp_path, tokenizer, write_jsonl):
    words = ["a", "fine", "and", "moving", "film", "with", "a", "great", "cast", "and", "a", "sharp", "witty", "script"]
    rows = [{"sentence": " ".join(words[: 1 + (i * 7) % len(words)]), "label": i % 2, "idx": i} for i in range(256)]
    folder = write_jsonl(rows)

    def padding_and_ids(grouped: bool):
        overrides = ["dataset=sst2", f"dataset.data_dir={folder}", "dataset.batch_size=16"]
        dm = TextDataModule(_settings(tmp_path, [*overrides, f"dataset.group_by_length={grouped}"]), tokenizer)
        dm.setup("fit")
        pads, seen = 0, []
        for batch in dm.train_dataloader():
            pads += int((batch["attention_mask"] == 0).sum())
            seen += batch["input_ids"][:, 1].tolist()  # first word id: enough to count rows per length
        return pads, sorted(seen)

    plain_pads, plain_seen = padding_and_ids(False)
    grouped_pads, grouped_seen = padding_and_ids(True)
    assert grouped_seen == plain_seen  # same rows, once each
    assert grouped_pads < 0.3 * plain_pads


@pytest.mark.parametrize("grouped", [False, True])
def test_restored_position_yields_the_rest_of_the_interrupted_epoch_then_the_same_next_epoch(
    tmp_path, tokenizer, grouped
):
    settings = _settings(tmp_path, ["dataset.batch_size=8", "dataset.max_train_rows=200",
                                    f"dataset.group_by_length={str(grouped).lower()}"])  # fmt: skip

    def epochs(dm):
        loader, out = dm.train_dataloader(), []
        for epoch in range(2):
            loader.sampler.set_epoch(epoch)  # as Lightning does at each epoch start
            out.append([batch["input_ids"].tolist() for batch in loader])
        return out

    reference = TextDataModule(settings, tokenizer, seed=5)
    reference.setup("fit")
    epoch0, epoch1 = epochs(reference)
    assert epoch0 != epoch1  # each epoch draws its own order
    resumed = TextDataModule(settings, tokenizer, seed=5)
    resumed.setup("fit")
    resumed.load_state_dict({"epoch": 0, "batches": 7})  # a checkpoint taken after 7 batches of epoch 0
    rest0, again1 = epochs(resumed)
    assert rest0 == epoch0[7:] and again1 == epoch1


def test_labelled_evaluation_runs_longest_first_and_scores_as_in_any_order(tmp_path, write_jsonl):
    """Sorting is only allowed because classification scores do not depend on the order: checked on a real model."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    from peftlab.modules import build_module
    from peftlab.run.setup import prepare_job

    rows = [{"sentence": " ".join(["word"] * (1 + (7 * i) % 23)), "label": i % 2} for i in range(48)]
    folder = write_jsonl(rows)
    settings = validate(compose_config(["dataset=sst2", f"dataset.data_dir={folder}", "dataset.eval_batch_size=8"],
                                       output_dir=tmp_path))  # fmt: skip
    job = prepare_job(settings)
    dm = job.datamodule
    dm.setup("fit")
    lengths = [len(ids) for ids in dm.val_dataset["input_ids"]]
    assert lengths == sorted(lengths, reverse=True) and len(lengths) == 48
    padded = sum(b["input_ids"].numel() for b in dm.val_dataloader())
    other_order = dm.val_dataset.shuffle(seed=1)
    shuffled = DataLoader(other_order, batch_size=8, collate_fn=dm.collator)
    assert padded < sum(b["input_ids"].numel() for b in shuffled)

    module = build_module(settings.shape, settings.dataset, job.base, job.tokenizer)
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    (sorted_scores,) = trainer.validate(module, dataloaders=dm.val_dataloader(), verbose=False)
    (shuffled_scores,) = trainer.validate(module, dataloaders=shuffled, verbose=False)
    assert sorted_scores["val/accuracy"] == shuffled_scores["val/accuracy"]
    assert sorted_scores["val/loss"] == pytest.approx(shuffled_scores["val/loss"], abs=1e-5)

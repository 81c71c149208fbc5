"""Classification beyond SST-2: multi-class (AG News, 4 topics) and sentence pairs (QQP, hub columns)."""

import json

from conftest import compose_config, shared_split_dir

from peftlab.config import validate
from peftlab.data.datamodule import TextDataModule
from peftlab.models.loading import load_tokenizer
from peftlab.run import fit


def test_ag_news_four_classes_from_local_files(tmp_path):
    data_dir = shared_split_dir("ag_news")
    fit(
        compose_config(
            [
                "dataset=ag_news",
                f"dataset.data_dir={data_dir}",
                "dataset.max_train_rows=128",
                "dataset.max_eval_rows=64",
                "trainer.max_epochs=1",
            ],
            output_dir=tmp_path,
        )
    )
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["dataset"] == "ag_news" and report["params"]["trainable"] > 0
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_CLS"
    assert report["params"]["trainable"] == 6 * 2 * 8 * (384 + 384) + 384 * 4 + 4  # LoRA q,v + 4-class head


def test_qqp_pairs_are_encoded_as_pairs_and_scored_with_binary_f1(tmp_path, write_jsonl):
    rows = [
        {"question1": "How do I learn Python?", "question2": "What is the best way to learn Python?", "label": 1},
        {"question1": "How tall is Everest?", "question2": "Who wrote Hamlet?", "label": 0},
    ] * 16
    folder = write_jsonl(rows)
    settings = validate(compose_config(["dataset=qqp", f"dataset.data_dir={folder}"], output_dir=tmp_path)).dataset
    dm = TextDataModule(settings, load_tokenizer(validate(compose_config([], output_dir=tmp_path)).model))
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    assert int(batch["token_type_ids"][0].max()) == 1  # second segment marked: a real pair encoding
    fit(compose_config(["dataset=qqp", f"dataset.data_dir={folder}", "trainer.max_epochs=1"], output_dir=tmp_path))
    best = json.loads((tmp_path / "metrics.json").read_text())["best"]
    assert {"val/accuracy", "val/binary_f1", "val/f1"} <= set(best)

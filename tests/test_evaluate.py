"""evaluate.py: an adapter scores exactly what training recorded; base vs adapters in one before/after table."""

import csv
import json

import pytest
from conftest import CONF, compose_config, run_cli
from hydra import compose, initialize_config_dir

from peftlab.errors import ConfigError
from peftlab.run.evaluate import evaluate
from peftlab.run.train import fit

DATA = ["dataset.max_train_rows=320", "dataset.max_eval_rows=200", "seed=3"]


def eval_config(overrides: list[str], output_dir):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(
            "evaluate", overrides=[*overrides, f"paths.output_dir={output_dir}", "trainer.enable_progress_bar=false"]
        )


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    fit(compose_config([*DATA, "trainer.max_epochs=1", "peft.lr=2e-3", "dataset.batch_size=16"], output_dir=out))
    return out


def test_adapter_reproduces_the_recorded_validation_metric(trained_run, tmp_path):
    recorded = json.loads((trained_run / "metrics.json").read_text())["best"]
    (row,) = evaluate(eval_config([f"adapter={trained_run}", *DATA], tmp_path))
    assert row["method"] == "lora" and row["rows"] == 200
    assert row["val/accuracy"] == recorded["val/accuracy"]
    assert row["val/f1"] == recorded["val/f1"]
    assert (tmp_path / "eval_metrics.json").is_file()


def test_compare_run_and_base_writes_markdown_and_csv(trained_run, tmp_path):
    rows = evaluate(eval_config([f"compare=[{trained_run},base]", *DATA], tmp_path))
    assert [r["method"] for r in rows] == ["lora", "none"]
    table = list(csv.DictReader((tmp_path / "compare.csv").open()))
    assert [float(r["val/accuracy"]) for r in table] == pytest.approx([r["val/accuracy"] for r in rows])
    markdown = (tmp_path / "compare.md").read_text().splitlines()
    assert markdown[0].startswith("| model | method | adapter | dataset | rows | val/accuracy") and len(markdown) == 4


def test_missing_adapter_and_training_with_none_are_named_errors(tmp_path):
    with pytest.raises(ConfigError, match="no adapter here"):
        evaluate(eval_config([f"adapter={tmp_path}"], tmp_path))
    with pytest.raises(ConfigError, match="peft=none: trains nothing"):
        fit(compose_config(["peft=none"], output_dir=tmp_path))


def test_evaluate_cli_prints_the_table(trained_run, tmp_path):
    proc = run_cli(f"adapter={trained_run}", *DATA, f"hydra.run.dir={tmp_path}", script="evaluate.py")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "peftlab evaluation" in proc.stdout and (tmp_path / "compare.md").is_file()

"""evaluate.py: an adapter scores exactly what training recorded; base vs adapters in one before/after table."""

import csv
import json
from pathlib import Path

import pytest
from conftest import compose_config, eval_config, run_cli

from peftlab.errors import ConfigError
from peftlab.run import fit
from peftlab.run.evaluation import evaluate

DATA = ["dataset.max_train_rows=320", "dataset.max_eval_rows=200", "seed=3"]


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
    assert markdown[0].startswith("| model | method | adapter | dataset | split | rows | val/accuracy")
    assert len(markdown) == 4


def test_missing_adapter_and_training_with_none_are_named_errors(tmp_path):
    with pytest.raises(ConfigError, match="no adapter here"):
        evaluate(eval_config([f"adapter={tmp_path}"], tmp_path))
    with pytest.raises(ConfigError, match="peft=none: trains nothing"):
        fit(compose_config(["peft=none"], output_dir=tmp_path))


def test_split_test_scores_only_rows_the_run_never_trained_on(trained_run, tmp_path):
    """The run held nothing out (dataset.test_split=null) and demo has no test file: held-out rows would be rows it
    trained on, so split=test is refused before anything loads; a run that held rows out is scored on them."""
    with pytest.raises(ConfigError, match=r"split=test: .* was trained on all of train .* has no test split"):
        evaluate(eval_config([f"adapter={trained_run}", "split=test", "dataset.test_split=test", *DATA], tmp_path))
    with pytest.raises(ConfigError, match=r"split=test: dataset.test_split=null"):
        evaluate(eval_config(["split=test", *DATA], tmp_path))
    held = tmp_path / "held"
    overrides = [
        *DATA,
        "trainer.max_steps=2",
        "dataset.batch_size=16",
        "dataset.test_split=test",
        "dataset.test_holdout=50",
    ]
    fit(compose_config(overrides, output_dir=held))
    (row,) = evaluate(eval_config([f"adapter={held}", "split=test", *DATA], tmp_path / "eval"))
    assert row["split"] == "test" and row["rows"] == 50 and 0 <= row["test/accuracy"] <= 1
    assert row["test_rows_from"].startswith("50 train rows held out (50 rows, seed 0)")


def test_evaluate_cli_prints_the_table(trained_run, tmp_path):
    proc = run_cli(f"adapter={trained_run}", *DATA, f"hydra.run.dir={tmp_path}", script="evaluate.py")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "peftlab evaluation" in proc.stdout and (tmp_path / "compare.md").is_file()


@pytest.fixture
def local_s3(monkeypatch):
    """A real S3 HTTP endpoint (moto's server) on 127.0.0.1; boto3 is pointed at it by AWS_ENDPOINT_URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    for key, value in {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    yield
    server.stop()


def test_s3_model_tarball_evaluates_like_the_folder(trained_run, tmp_path, local_s3):
    import tarfile

    import boto3

    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:  # the layout of a SageMaker model dir: adapter/, config.yaml, ...
        for name in ("adapter", "config.yaml", "metrics.json"):
            tar.add(trained_run / name, arcname=name)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="peftlab-test")
    s3.upload_file(str(archive), "peftlab-test", "jobs/run-1/output/model.tar.gz")

    (from_s3,) = evaluate(
        eval_config(["source=s3://peftlab-test/jobs/run-1/output/model.tar.gz", *DATA], tmp_path / "s3")
    )
    (from_folder,) = evaluate(eval_config([f"adapter={trained_run}", *DATA], tmp_path / "folder"))
    assert from_s3["val/accuracy"] == from_folder["val/accuracy"] and from_s3["val/f1"] == from_folder["val/f1"]
    with pytest.raises(ConfigError, match="download failed"):
        evaluate(eval_config(["source=s3://peftlab-test/missing.tar.gz"], tmp_path / "missing"))


def test_run_encoding_is_kept_on_its_own_dataset(tmp_path):
    from omegaconf import OmegaConf

    from peftlab.run.evaluation import with_run_model

    run_config = tmp_path / "config.yaml"
    trained = compose_config(["dataset.max_length=24", "peft.r=4"], output_dir=tmp_path)
    OmegaConf.save(trained, run_config, resolve=True)
    cfg = with_run_model(eval_config(["dataset.max_eval_rows=10"], tmp_path), run_config)
    assert cfg.dataset.max_length == 24 and cfg.dataset.max_eval_rows == 10 and cfg.peft.r == 4


def test_evaluate_honours_trainer_overrides(tmp_path, write_jsonl):
    """evaluate.py builds its Trainer from cfg.trainer too: `+trainer.fast_dev_run=1` scores one batch only."""
    rows = [{"question": f"Who wears number {i}?", "context": "table: players\ncolumns: name, number",
             "answer": f"SELECT name FROM players WHERE number = {i}"} for i in range(12)]  # fmt: skip
    folder = write_jsonl(rows)
    data = ["model=gpt2_tiny", "dataset=sql", f"dataset.data_dir={folder}", "dataset.eval_batch_size=4",
            "dataset.generation.max_new_tokens=2"]  # fmt: skip
    (whole,) = evaluate(eval_config(data, tmp_path / "all"))
    (one,) = evaluate(eval_config([*data, "+trainer.fast_dev_run=1"], tmp_path / "one"))
    lines = [len(Path(row["predictions"]).read_text().splitlines()) for row in (whole, one)]
    assert lines == [12, 4]


def test_generation_scores_a_test_file_of_its_own_under_test_metrics(tmp_path, write_jsonl):
    """A test.jsonl in data_dir is the test split (nothing held out of train); generation scores it as validation."""
    rows = [{"question": f"Who wears number {i}?", "context": "table: players\ncolumns: name, number",
             "answer": f"SELECT name FROM players WHERE number = {i}"} for i in range(12)]  # fmt: skip
    folder = write_jsonl(rows)
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:5]))
    data = ["model=gpt2_tiny", "dataset=sql", f"dataset.data_dir={folder}", "dataset.generation.max_new_tokens=2",
            "split=test", "dataset.test_split=test"]  # fmt: skip
    (row,) = evaluate(eval_config(data, tmp_path))
    assert row["rows"] == 5 and {"test/exact_match", "test/rougeL", "test/loss"} <= set(row)
    assert row["test_rows_from"] == "the dataset's test split 'test' (5 rows)"
    assert len(Path(row["predictions"]).read_text().splitlines()) == 5

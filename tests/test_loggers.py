"""logger=...: each tracker records the config, the per-step metrics, the final summary and (where it can) adapter/."""

import csv
import importlib.util
import json
import re
import struct

import pytest
from conftest import compose_config, option_names
from hydra.utils import instantiate

from peftlab.errors import ConfigError
from peftlab.run import fit
from peftlab.trainer.tracking import summary_metrics

# The GPT-2 twin on 64 demo rows: 2 epochs of 4 steps, seconds per run.
SHRINK = [
    "model=gpt2_tiny",
    "dataset.max_train_rows=64",
    "dataset.max_eval_rows=32",
    "dataset.batch_size=16",
    "trainer.max_epochs=2",
]
STEPS = 8


@pytest.fixture(autouse=True)
def _trackers_in_tmp(tmp_path, monkeypatch):
    """Nothing in the home folder or the repo: W&B's dirs, MLflow's default store; no telemetry; W&B offline."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'env-mlflow.db'}")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")  # all W&B needs to run without network or account
    monkeypatch.setenv("WANDB_CONSOLE", "off")  # leave pytest's output capture alone
    monkeypatch.setenv("WANDB_SILENT", "true")
    for kind in ("CONFIG", "CACHE", "DATA"):
        monkeypatch.setenv(f"WANDB_{kind}_DIR", str(tmp_path / "wandb-home" / kind.lower()))


def _fit(tmp_path, overrides):
    out = tmp_path / "run"
    result = fit(compose_config([*SHRINK, *overrides], output_dir=out))
    assert result.trainer.global_step == STEPS
    return result


def _mlflow_overrides(tmp_path) -> list[str]:
    """A store of its own in tmp_path (the default, sqlite:///mlflow.db, is the launch folder's)."""
    return [
        f"logger.mlflow.tracking_uri='sqlite:///{tmp_path / 'mlflow.db'}'",
        f"logger.mlflow.artifact_location='{tmp_path / 'mlartifacts'}'",
    ]


def _mlflow_run(tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("train-demo")
    (run,) = client.search_runs([experiment.experiment_id])
    return client, run


def test_every_logger_option_instantiates(tmp_path):
    cfg = compose_config(["logger=[" + ",".join(option_names("logger")) + "]"], output_dir=tmp_path)
    assert set(cfg.logger) == {"csv", "tensorboard", "mlflow", "wandb"}
    for name, node in cfg.logger.items():
        if name in ("mlflow", "wandb"):
            pytest.importorskip(name)
        # Runs start lazily (first log call); MLFlowLogger opens its store (MLFLOW_TRACKING_URI: in tmp_path).
        assert type(instantiate(node)).__name__ == node["_target_"].rsplit(".", 1)[-1]


def test_missing_tracker_package_fails_before_any_work(tmp_path, monkeypatch):
    real_find_spec = importlib.util.find_spec
    hide_mlflow = lambda name, *args: None if name == "mlflow" else real_find_spec(name, *args)  # noqa: E731
    monkeypatch.setattr(importlib.util, "find_spec", hide_mlflow)
    cfg = compose_config([*SHRINK, "logger=[csv,mlflow]"], output_dir=tmp_path / "run")
    expected = "logger=mlflow: needs the mlflow package (pip install 'peftlab[mlflow]')"
    with pytest.raises(ConfigError, match=f"^{re.escape(expected)}$"):
        fit(cfg)
    assert not (tmp_path / "run").exists()  # failed before the run folder, data or model


def test_mlflow_records_params_metric_history_summary_and_adapter(tmp_path):
    pytest.importorskip("mlflow")
    result = _fit(tmp_path, ["logger=mlflow", *_mlflow_overrides(tmp_path)])
    client, run = _mlflow_run(tmp_path)
    assert run.info.run_name == "gpt2_tiny-lora-seed42" and run.info.status == "FINISHED"
    params = run.data.params
    assert params["model/name"] == "gpt2_tiny" and params["peft/method"] == "lora" and params["peft/r"] == "8"
    history = client.get_metric_history(run.info.run_id, "train/loss_step")
    assert sorted(m.step for m in history) == list(range(STEPS))
    assert len(client.get_metric_history(run.info.run_id, "val/accuracy")) == 2  # once per epoch
    report = json.loads((result.output_dir / "metrics.json").read_text())
    assert run.data.metrics["best/val/accuracy"] == pytest.approx(result.best_metric)
    assert run.data.metrics["params/trainable"] == report["params"]["trainable"]
    assert run.data.metrics["samples_per_s"] == pytest.approx(report["samples_per_s"])
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "adapter")}
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors"} <= logged


def test_several_loggers_at_once(tmp_path):
    pytest.importorskip("mlflow")
    result = _fit(tmp_path, ["logger=[csv,mlflow]", *_mlflow_overrides(tmp_path)])
    assert len(result.trainer.loggers) == 2
    rows = list(csv.DictReader((result.output_dir / "csv" / "metrics.csv").open()))
    csv_steps = [int(r["step"]) for r in rows if r.get("train/loss_step")]
    client, run = _mlflow_run(tmp_path)
    mlflow_steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/loss_step"))
    assert csv_steps == mlflow_steps == list(range(STEPS))
    assert "model:" in (result.output_dir / "csv" / "hparams.yaml").read_text()  # the config, next to the CSV


def test_tensorboard_event_file_holds_the_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    result = _fit(tmp_path, ["logger=tensorboard"])
    events = EventAccumulator(str(result.output_dir / "tensorboard"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train/loss_step")] == list(range(STEPS))
    assert {"val/accuracy", "best/val/accuracy", "params/trainable", "samples_per_s"} <= scalars
    (best,) = events.Scalars("best/val/accuracy")
    assert best.value == pytest.approx(result.best_metric) and best.step == STEPS
    start = HParamsPluginData.FromString(events.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    assert start.session_start_info.hparams["model/name"].string_value == "gpt2_tiny"  # the config, flattened


def test_wandb_offline_writes_a_run_folder_with_history_summary_and_adapter(tmp_path):
    wandb = pytest.importorskip("wandb")
    result = _fit(tmp_path, ["logger=wandb"])
    assert wandb.run is None  # finished at the end of the job: a sweep's next job starts a run of its own
    (folder,) = (result.output_dir / "wandb").glob("offline-run-*")
    (history_file,) = folder.glob("run-*.wandb")
    records = _read_wandb_records(history_file)
    steps = [r.history for r in records if r.WhichOneof("record_type") == "history"]
    logged = [{_key(i): json.loads(i.value_json) for i in h.item} for h in steps]
    assert [row["trainer/global_step"] for row in logged if "train/loss_step" in row] == list(range(STEPS))
    (run_record,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    config = {_key(i): json.loads(i.value_json) for i in run_record.config.update}
    config |= {_key(i): json.loads(i.value_json) for r in records if r.HasField("config") for i in r.config.update}
    assert config["model"]["name"] == "gpt2_tiny" and config["peft"]["method"] == "lora"
    summary = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            summary |= {_key(i): json.loads(i.value_json) for i in r.summary.update}
    report = json.loads((result.output_dir / "metrics.json").read_text())
    expected = summary_metrics(report)
    assert summary["best/val/accuracy"] == pytest.approx(expected["best/val/accuracy"])
    assert summary["params/trainable"] == report["params"]["trainable"]
    (artifact,) = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    assert artifact.name == f"adapter-{run_record.run_id}" and artifact.type == "model"
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {c.path for c in artifact.manifest.contents}


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def _read_wandb_records(path):
    """The records of a .wandb file: a 7-byte header, then LevelDB-style log blocks of protobuf `Record`s.

    By hand because wandb 0.31 ships no Python reader for it any more (its Go core writes the file).
    """
    from wandb.proto.wandb_internal_pb2 import Record

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    records, pos, pending = [], 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST chunk: a whole record is in `pending`
            record = Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def test_a_resumed_run_continues_its_mlflow_and_wandb_runs(tmp_path):
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    trackers = ["logger=[mlflow,wandb]", *_mlflow_overrides(tmp_path)]
    first = _fit(tmp_path, trackers)  # 2 epochs, 8 steps; then continued to 3 epochs as a user would
    resumed = fit(compose_config([*SHRINK, *trackers, "resume=auto", "trainer.max_epochs=3"], first.output_dir))
    assert resumed.trainer.global_step == STEPS + STEPS // 2
    client, run = _mlflow_run(tmp_path)  # one run, not a second one holding only the resumed steps
    history = client.get_metric_history(run.info.run_id, "train/loss_step")
    assert sorted(m.step for m in history) == list(range(STEPS + STEPS // 2))
    assert run.data.params["trainer/max_epochs"] == "2"  # MLflow keeps a run's first parameters
    folders = sorted((first.output_dir / "wandb").glob("offline-run-*"))
    assert len(folders) == 2 and len({f.name.rsplit("-", 1)[1] for f in folders}) == 1  # both attempts: one run id

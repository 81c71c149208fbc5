"""RunDir names every file a run writes, and reads back what was written."""

import json

import pytest
import torch
from conftest import compose_config
from omegaconf import OmegaConf

from peftlab.errors import ConfigError
from peftlab.run import fit
from peftlab.rundir import RunDir


def test_every_file_of_a_run_is_a_rundir_path_and_round_trips(tmp_path):
    cfg = compose_config(["dataset.max_train_rows=64", "dataset.max_eval_rows=32", "trainer.max_epochs=1"], tmp_path)
    result = fit(cfg)
    run = RunDir(tmp_path)
    named = {run.config, run.metrics, run.adapter, run.checkpoints}
    loggers = {tmp_path / name for name in cfg.logger}  # each logger's own folder (csv/)
    assert {p for p in tmp_path.iterdir()} <= named | loggers
    assert run.read_metrics() == json.loads(run.metrics.read_text()) == result.report
    assert run.read_config().model.name == "minilm" and run.read_config().seed == cfg.seed
    assert run.last_checkpoint.is_file() and "state_dict" in torch.load(run.last_checkpoint, weights_only=False)
    assert RunDir.of_adapter(tmp_path) == (run.adapter, run) == RunDir.of_adapter(run.adapter)
    best_step = result.report["best"]["step"]  # model_checkpoint's file, named by the pattern RunDir owns
    assert run.checkpoint(best_step).is_file() and run.checkpoint(best_step).name.endswith(f"-step{best_step:06d}.ckpt")
    with pytest.raises(ConfigError, match=f"no checkpoint of step {best_step + 1}"):
        run.checkpoint(best_step + 1)
    assert result.report["schema_version"] == 2 and "cost" not in result.report

    copy = RunDir(tmp_path / "copy")  # what write_* writes, read_* gives back
    copy.write_config(run.read_config())
    copy.write_metrics(run.read_metrics())
    assert OmegaConf.to_container(copy.read_config()) == OmegaConf.to_container(run.read_config())
    assert copy.read_metrics() == run.read_metrics()


def test_a_plain_config_is_written_as_omegaconf_writes_it(tmp_path):
    """RunOutputs' resolved dict takes a shorter way to the same text (strings that read as other types quoted)."""
    config = {"z": 1, "a": {"lr": "1e-3", "flag": "true", "none": "null", "x": None, "n": "10", "f": 1e-05},
              "list": [1, "2", {"k": "v"}], "name": "héllo: ${x}", "empty": {}, "path": "/a/b"}  # fmt: skip
    run = RunDir(tmp_path / "run")
    run.write_config(config)
    OmegaConf.save(config, tmp_path / "expected.yaml")
    assert run.config.read_text() == (tmp_path / "expected.yaml").read_text()
    assert OmegaConf.to_container(OmegaConf.load(run.config)) == config


def test_checkpoints_may_live_elsewhere(tmp_path):
    run = RunDir(tmp_path / "run", checkpoint_dir=tmp_path / "synced")
    assert run.last_checkpoint == tmp_path / "synced" / "last.ckpt"
    assert run.tracker_runs == tmp_path / "synced" / "tracker_runs.json"


def test_a_folder_without_a_run_is_a_named_error(tmp_path):
    with pytest.raises(ConfigError, match=r"no metrics\.json"):
        RunDir(tmp_path).read_metrics()
    with pytest.raises(ConfigError, match="no adapter here"):
        RunDir.of_adapter(tmp_path)

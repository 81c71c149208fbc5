"""A run folder written by an earlier version still evaluates, exports and serves: RunDir reads it by its version."""

import pytest
from conftest import compose_config, eval_config
from omegaconf import OmegaConf

from peftlab.config import validate
from peftlab.run import fit
from peftlab.run.evaluation import evaluate
from peftlab.rundir import RunDir


def test_a_run_from_before_methods_were_records_still_evaluates(tmp_path):
    method = "lora"
    cfg = compose_config([f"peft={method}", "dataset.max_train_rows=64", "dataset.max_eval_rows=48",
                          "trainer.max_epochs=1"], tmp_path / "run")  # fmt: skip
    best = fit(cfg).best_metric
    run = RunDir(tmp_path / "run")
    old = OmegaConf.load(run.config)  # rewritten as the earlier version wrote it (keys since moved or removed)
    for key in ("_target_", "capabilities"):
        old.peft.pop(key)
    old.dataset.local_name = None
    old.hardware.instance_type, old.hardware.spot = None, False
    OmegaConf.save(old, run.config)

    upgraded = run.read_config()
    assert upgraded.peft._target_.startswith("peft.") and "local_name" not in upgraded.dataset
    (row,) = evaluate(eval_config([f"adapter={run.root}", "dataset.max_eval_rows=48"], tmp_path / "eval"))
    assert row["method"] == method and row["val/accuracy"] == pytest.approx(best, abs=1e-6)


@pytest.mark.parametrize("method", ["qlora", "ia3", "prefix"])
def test_old_peft_sections_get_their_methods_record(method, tmp_path):
    """What the earlier version wrote for each peft method it had: the class and capabilities come from its YAML."""
    cfg = compose_config([f"peft={method}"], tmp_path)
    old = OmegaConf.to_container(cfg, resolve=True)
    for key in ("_target_", "capabilities"):
        old["peft"].pop(key)
    run = RunDir(tmp_path / "old")
    run.write_config(OmegaConf.create(old))
    settings = validate(run.read_config(), check_files=False)
    assert settings.peft.method == method and settings.peft._target_ == cfg.peft._target_
    assert settings.peft.capabilities.base_4bit == (method == "qlora")


def test_metrics_of_the_first_schema_read_as_todays(tmp_path):
    import json

    from peftlab.errors import ConfigError
    from peftlab.rundir import METRICS_VERSION

    run = RunDir(tmp_path)
    run.metrics.write_text(json.dumps({"method": "lora", "best": None, "cost": None}))  # version 1: no schema_version
    assert run.read_metrics() == {"method": "lora", "best": None, "schema_version": METRICS_VERSION}
    run.metrics.write_text(json.dumps({"schema_version": METRICS_VERSION + 1}))
    with pytest.raises(ConfigError, match=f"metrics.json schema {METRICS_VERSION + 1} is newer than this peftlab's"):
        run.read_metrics()

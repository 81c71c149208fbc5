"""Sweeps: every experiment preset runs one step; Optuna optimises train()'s value; joblib runs jobs in parallel."""

import json

import yaml
from conftest import option_names, run_cli

QUIET = ["trainer.enable_progress_bar=false", "~callbacks.progress_bar"]
SST2_ROWS = [
    {"sentence": "a gorgeous, witty film", "label": 1, "idx": 0},
    {"sentence": "dull and lifeless", "label": 0, "idx": 1},
]


def test_every_experiment_preset_composes_and_runs_one_step(tmp_path, write_jsonl):
    folder = write_jsonl(SST2_ROWS * 8)  # presets name real datasets: point them at a small file in its columns
    result = run_cli("-m", "experiment=glob(*)", f"dataset.data_dir={folder}", "+trainer.fast_dev_run=1", *QUIET,
                     f"hydra.sweep.dir={tmp_path / 'sweep'}", timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(list((tmp_path / "sweep").glob("*/metrics.json"))) == len(option_names("experiment"))


def test_optuna_search_maximises_the_returned_validation_metric(tmp_path):
    sweep = tmp_path / "optuna"
    args = [
        "-m",
        "hparams_search=optuna",
        "peft=lora",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler.n_startup_trials=3",
        "dataset.max_train_rows=64",
        "dataset.max_eval_rows=64",
        "trainer.max_epochs=1",
        *QUIET,
        f"hydra.sweep.dir={sweep}",
    ]
    result = run_cli(*args, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    recorded = [json.loads(p.read_text()) for p in sweep.glob("*/metrics.json")]
    assert len(recorded) == 3
    assert best["best_value"] == max(r["best"]["val/accuracy"] for r in recorded)
    assert {"peft.lr", "peft.r", "peft.lora_alpha", "peft.lora_dropout"} <= set(best["best_params"])


def test_joblib_launcher_runs_the_jobs_in_parallel_and_the_report_follows(tmp_path):
    sweep = tmp_path / "joblib"
    result = run_cli("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "peft=lora,ia3",
                     "dataset.max_train_rows=64", "dataset.max_eval_rows=32", "trainer.max_epochs=1", *QUIET,
                     f"hydra.sweep.dir={sweep}", timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Joblib.Parallel(n_jobs=2" in result.stdout + result.stderr
    reports = [json.loads(p.read_text()) for p in sweep.glob("*/metrics.json")]
    assert sorted(r["method"] for r in reports) == ["ia3", "lora"]
    assert "| lora |" in (sweep / "summary.md").read_text()

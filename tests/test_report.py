"""Sweep report: a tiny real sweep (2 methods x 2 seeds) writes every file, with the runs' own numbers."""

import csv
import dataclasses
import json
import shutil
import sys
import warnings
from pathlib import Path

import forked_commands
import pytest
from conftest import REPO, run_cli

from peftlab.report import write_report
from peftlab.report.collect import collect_runs
from peftlab.report.flops import training_flops
from peftlab.report.plots import curve_figure, params_figure
from peftlab.report.summary import summarise
from peftlab.trainer.callbacks import peak_rss_mb, reset_peak_rss

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    result = run_cli(
        "-m",
        "peft=lora,ia3",
        "seed=0,1",
        "dataset.max_train_rows=128",
        "dataset.batch_size=32",
        "dataset.max_eval_rows=48",
        "trainer.max_epochs=1",
        "trainer.val_check_interval=0.5",
        "trainer.enable_progress_bar=false",
        "~callbacks.progress_bar",
        f"hydra.sweep.dir={out}",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def test_sweep_writes_every_report_file(sweep):
    for name in ("summary.csv", "summary.md", "metric_vs_steps.png", "metric_vs_seconds.png", "metric_vs_flops.png",
                 "best_vs_trainable_params.png"):  # fmt: skip
        assert (sweep / name).is_file(), name
        if name.endswith(".png"):
            assert (sweep / name).read_bytes()[:8] == PNG_MAGIC
    text = (sweep / "summary.md").read_text()
    assert "at 10 % of the compute" in text and "4·N_total + 2·N_trainable" in text


def test_summary_numbers_equal_the_runs_metrics(sweep):
    rows = {r["method"]: r for r in csv.DictReader((sweep / "summary.csv").open())}
    assert set(rows) == {"lora", "ia3"} and all(r["seeds"] == "2" for r in rows.values())
    for method, row in rows.items():
        reports = [json.loads(p.read_text()) for p in sweep.glob("*/metrics.json")]
        best = [r["best"]["val/accuracy"] for r in reports if r["method"] == method]
        assert float(row["best_mean"]) == pytest.approx(sum(best) / 2)
        trainable = {r["params"]["trainable"] for r in reports if r["method"] == method}
        assert {int(row["trainable_params"])} == trainable


def test_curves_have_one_line_per_method_and_flops_follow_the_formula(sweep):
    runs = collect_runs(sweep)
    assert len(runs) == 4 and all(len(r.curve) == 2 for r in runs)  # val_check_interval=0.5 -> two points
    fig = curve_figure(runs, "flops")
    assert len(fig.axes[0].get_lines()) == 2 and fig.axes[0].get_xscale() == "log"
    assert len(params_figure(runs).axes[0].collections) >= 2
    never_validated = [dataclasses.replace(r, curve=[], best=None) for r in runs]  # e.g. trainer.max_steps=2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns of a legend with nothing in it
        assert curve_figure(never_validated, "steps").axes[0].get_legend() is None
        assert params_figure(never_validated).axes[0].get_legend() is None
    report = json.loads((runs[0].folder / "metrics.json").read_text())
    expected = training_flops(report["params"]["total"], report["params"]["trainable"], report["train_tokens"])
    assert runs[0].train_flops == expected > 0


def test_verdict_picks_the_best_mean_at_each_budget(sweep):
    runs = collect_runs(sweep)
    rows, verdict = summarise(runs)
    full = max(rows, key=lambda r: r["at_100pct_mean"])
    assert verdict[1.0] == full["method"]


def test_second_job_of_the_sweep_hits_the_tokenisation_cache(sweep):
    logs = sorted(sweep.glob("*/train.log"), key=lambda p: int(p.parent.name))
    assert len(logs) == 4
    for log in logs[1:]:
        text = log.read_text()
        assert text.count(": cache hit") == 2, log  # train and validation splits both read back


def test_report_cli_rewrites_and_errors_in_one_line(sweep, tmp_path):
    assert write_report(sweep)["verdict"]
    result = forked_commands.run([sys.executable, "-m", "peftlab.report", str(tmp_path)], cwd=REPO, timeout=120)
    assert (
        result.returncode == 2 and result.stderr.strip() == f"error: {tmp_path}: no finished runs (no */metrics.json)"
    )


def test_settings_that_vary_besides_seed_get_rows_of_their_own(sweep, tmp_path):
    """Optuna trials or `peft.lr=a,b` must not be averaged together as if they were seeds."""
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    for job in copy.glob("*/metrics.json"):
        report = json.loads(job.read_text())
        if report["method"] == "lora":  # give lora's two seeds two different learning rates
            overrides = job.parent / ".hydra" / "overrides.yaml"
            overrides.write_text(overrides.read_text() + f"- peft.lr={0.001 * (1 + report['seed'])}\n")
    runs = collect_runs(copy)
    assert {r.label for r in runs} == {"lora lr=0.001", "lora lr=0.002", "ia3"}
    rows, _ = summarise(runs)
    assert sorted((r["method"], r["seeds"]) for r in rows) == [("ia3", 2), ("lora lr=0.001", 1), ("lora lr=0.002", 1)]
    assert {r.label for r in collect_runs(sweep)} == {"lora", "ia3"}  # seeds alone vary: one row per method


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux-only RSS reset")
def test_peak_rss_restarts_per_job_so_sweep_jobs_do_not_inherit_a_peak():
    block = b"\x01" * (300 * 2**20)  # written, so resident
    high = peak_rss_mb()
    del block
    reset_peak_rss()
    assert peak_rss_mb() < high - 200

"""peftlab.compare: the tune -> confirm -> test protocol on a tiny twin end to end, its statistics on known numbers,
the held-out split, and report.html in headless Chromium."""

import itertools
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import forked_commands
import pytest
import yaml
from conftest import CONF, REPO, option_names
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import peftlab.compare.search as search
import peftlab.compare.stages as stages
import peftlab.data.datamodule as datamodule
from peftlab.compare import run_protocol, write_compare_report
from peftlab.compare.plan import forwarded_overrides
from peftlab.compare.stats import NO_CLEAR_WINNER, t_interval, verdict
from peftlab.config.dataset_schema import DatasetSettings
from peftlab.data.heldout import held_out_source, holdout_rows, load_test, without_holdout
from peftlab.data.sources import load_split
from peftlab.errors import ConfigError
from peftlab.rundir import RunDir

METHODS = ["lora", "ia3"]
TINY = [  # a tiny twin, 64 train rows, 48 validation rows; tune 8 steps (halving: all 3 trials to step 4, the best 2
    # resumed to 8), confirm 12, validating every 4
    "model=deberta_v3_tiny",
    f"compare.methods=[{','.join(METHODS)}]",
    "compare.tune.trials=3",
    "compare.tune.rungs=[0.5,1.0]",
    "compare.tune.eta=2",
    "compare.tune.max_train_rows=64",
    "compare.tune.max_steps=8",
    "compare.tune.val_check_interval=4",
    "compare.confirm.max_train_rows=64",
    "compare.confirm.max_steps=12",
    "compare.confirm.val_check_interval=4",
    "dataset.batch_size=16",
    "dataset.max_eval_rows=48",
    "trainer.enable_progress_bar=false",
    "~callbacks.progress_bar",
]


def compose_compare(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("compare", overrides=overrides)


class ForkedSweeps:
    """The `subprocess` of peftlab.compare.stages in the protocol fixture: each sweep's `python -m peftlab.train -m`
    (its argv, starting folder and log as stages gives them) is a process forked from one that imported torch and
    the rest already (tests/forked_commands.py), not a new interpreter: the protocol starts about ten of them."""

    STDOUT = subprocess.STDOUT

    @staticmethod
    def run(command, stdout, stderr, cwd, check):
        assert stderr is subprocess.STDOUT and not check
        started = forked_commands.Forked(command, cwd, stdout=Path(stdout.name), append=True)
        return subprocess.CompletedProcess(command, started.wait(timeout=600))


@pytest.fixture(scope="module")
def protocol(tmp_path_factory):
    """The protocol run once, in this process (its sweeps are subprocesses), every stage and data load recorded.

    It starts in an empty folder outside the repository: its sweeps run the installed training command there.
    """
    out = tmp_path_factory.mktemp("compare")
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    assert REPO not in elsewhere.parents
    overrides = [*TINY, f"compare.out={out}"]
    events = []
    sweep, test_load = stages.run_sweep, datamodule.load_test

    def recorded_sweep(plan, stage, method, *args):
        events.append(("sweep", stage, method))
        return sweep(plan, stage, method, *args)

    def recorded_test_load(settings, source):
        events.append(("test rows read", settings.name, source.split))
        return test_load(settings, source)

    with pytest.MonkeyPatch.context() as patch, initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        patch.chdir(elsewhere)
        patch.setattr(stages, "run_sweep", recorded_sweep)
        patch.setattr(stages, "subprocess", ForkedSweeps)
        patch.setattr(datamodule, "load_test", recorded_test_load)
        cfg = compose("compare", overrides=overrides)
        result = run_protocol(cfg, overrides)
    return out, result, events, overrides, elsewhere


def _trials(folder, with_curve=False):
    """(lr, best validation accuracy, seed) of each job of a sweep folder, read from its own files (with_curve: and
    its validations as {step: accuracy})."""
    found = []
    for metrics in folder.glob("*/metrics.json"):
        report = json.loads(metrics.read_text())
        lr = yaml.safe_load((metrics.parent / "config.yaml").read_text())["peft"]["lr"]
        curve = {h["step"]: h["val/accuracy"] for h in report["history"]}
        found.append((lr, report["best"]["val/accuracy"], report["seed"], *([curve] if with_curve else [])))
    return sorted(found, key=lambda t: t[:3])


def test_each_stage_leaves_its_outputs_and_the_chosen_lr_is_the_argmax_of_its_trials(protocol):
    out, result, *_ = protocol
    chosen = json.loads((out / "chosen_lr.json").read_text())
    assert list(chosen) == METHODS
    for method in METHODS:
        grid = _trials(out / "tune" / method, with_curve=True)
        low, high = chosen[method]["lr_range"]
        assert [lr for lr, *_ in grid] == search.lr_grid(low, high, 3) and grid[0][0] == low
        # halving: every trial validated at step 4; the best two at step 4 went on to step 8, resumed (one curve)
        at_rung = sorted(grid, key=lambda t: (-t[3][4], t[0]))
        assert [sorted(t[3]) for t in at_rung] == [[4, 8], [4, 8], [4]]
        extensions = sorted(out.glob(f"tune_ext*/{method}"))  # rates past an end, while the best sat there
        assert len(extensions) == chosen[method]["extensions"] <= 2
        trials = sorted([t[:3] for t in grid] + [t for folder in extensions for t in _trials(folder)])
        assert [t["lr"] for t in chosen[method]["trials"]] == [lr for lr, _, _ in trials]
        finalists = [t for t in trials if t[0] != at_rung[2][0]]  # only trials that reached the budget compete
        best = max(value for _, value, _ in finalists)
        argmax = min(lr for lr, value, _ in finalists if value == best)  # ties: the smaller learning rate
        assert chosen[method]["tuned_lr"] == argmax and chosen[method]["tuned_best"] == best
        confirmed = _trials(out / "confirm" / method)
        assert {lr for lr, _, _ in confirmed} == {argmax} and sorted(s for _, _, s in confirmed) == [0, 1, 2]
        default_lr = chosen[method]["default_lr"]
        assert default_lr not in [lr for lr, _, _ in trials]  # the 3-point grid misses the default: an arm of its own
        at_default = _trials(out / "confirm_default" / method)
        assert {lr for lr, _, _ in at_default} == {default_lr} and sorted(s for _, _, s in at_default) == [0, 1, 2]
    scores = json.loads((out / "test" / "scores.json").read_text())
    for run in {r["run"] for r in scores}:  # what the test stage read is all that is left of confirm's checkpoints
        kept = sorted(p.name for p in (Path(run) / "checkpoints").glob("*.ckpt"))
        assert kept == sorted(RunDir(run).checkpoint(r["step"]).name for r in scores if r["run"] == run)
    arms = {(Path(r["run"]).parts[-3], r["method"], r["seed"]) for r in scores}
    assert arms == {(a, m, s) for a in ("confirm", "confirm_default") for m in METHODS for s in (0, 1, 2)}
    assert {"tuning-verdict", "tuning-effect"} <= {t.html_id for t in result["tables"]}
    assert "tuning_effect" in result["plots"]
    assert all("held out" in r["test_rows_from"] and r["split"] == "test" for r in scores)
    for name in ("summary.md", "summary.csv", "report.html", "chosen_lr.csv"):
        assert (out / name).is_file(), name
    assert [r["verdict"].best for r in result["results"] if r["budget"] == 1.0] != [None, None]


def test_test_rows_are_read_only_after_every_sweep_and_never_by_a_training_job(protocol):
    out, _, events, *_ = protocol
    first_read = next(i for i, e in enumerate(events) if e[0] == "test rows read")
    swept = [re.sub(r"_ext\d+$", "", e[1]) for e in events[:first_read] if e[0] == "sweep"]
    assert len(swept) == first_read and [stage for stage, _ in itertools.groupby(swept)] == [
        "tune", "confirm", "confirm_default"
    ]  # fmt: skip
    assert all(e[0] == "test rows read" for e in events[first_read:]) and len(events) > first_read
    logs = [log for stage in ("tune", "confirm", "confirm_default") for log in out.glob(f"{stage}/*/*/train.log")]
    assert len(logs) == 3 * 2 * 3
    for log in logs:
        text = log.read_text()
        assert "train rows: 64 " in text and "validation rows: 48 " in text and "test rows" not in text, log


def test_stages_run_the_installed_training_command_in_the_starting_folder(protocol):
    """Every sweep is `python -m peftlab.train -m ...`, started where the comparison was: no path of a checkout."""
    out, _, _, _, elsewhere = protocol
    for stage in ("tune", "confirm", "confirm_default"):
        for method in METHODS:
            command = (out / stage / method / "command.txt").read_text()
            assert command.startswith("-m peftlab.train -m ") and str(REPO) not in command, command
            for hydra_yaml in (out / stage / method).glob("*/.hydra/hydra.yaml"):
                assert yaml.safe_load(hydra_yaml.read_text())["hydra"]["runtime"]["cwd"] == str(elsewhere.resolve())
    assert list(elsewhere.iterdir()) == []  # every output went to compare.out


def test_a_rerun_skips_finished_stages(protocol, monkeypatch, tmp_path):
    out, _, _, overrides, _ = protocol

    def no_job(*args, **kwargs):
        raise AssertionError(f"a finished stage ran again: {args}")

    monkeypatch.setattr(stages.subprocess, "run", no_job)
    monkeypatch.setattr("peftlab.run.evaluation.score_each", no_job)
    monkeypatch.setattr("peftlab.run.score_checkpoints", no_job)
    monkeypatch.chdir(tmp_path)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        result = run_protocol(compose("compare", overrides=overrides), overrides)
    assert result["html"] == out / "report.html"


def test_the_command_line_resumes_a_comparison_from_a_folder_outside_the_repository(protocol, tmp_path):
    """`python -m peftlab.compare` started elsewhere: the config tree comes from the package, every finished stage
    is found and skipped (no job ran: the runs' files are untouched), and the report is written again."""
    out, _, _, overrides, _ = protocol
    runs = {p: p.stat().st_mtime_ns for p in out.glob("*/*/*/metrics.json")}
    scores = (out / "test" / "scores.json").read_text()
    command = [sys.executable, "-m", "peftlab.compare", *overrides]
    proc = forked_commands.run(command, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (out / "compare.log").read_text()
    for stage in ("tune", "confirm", "confirm_default"):
        for method in METHODS:
            assert f"{stage} {method}: done already" in log, (stage, method)
    assert len(runs) == 3 * 2 * 3 and {p: p.stat().st_mtime_ns for p in out.glob("*/*/*/metrics.json")} == runs
    assert (out / "test" / "scores.json").read_text() == scores
    assert "peftlab.compare model=deberta_v3_tiny" in (out / "command.txt").read_text()
    assert (out / "report.html").is_file() and list(tmp_path.iterdir()) == []


def test_held_out_rows_are_seeded_disjoint_from_train_and_said_so(tmp_path, write_jsonl):
    folder = write_jsonl([{"sentence": f"row {i}", "label": i % 2} for i in range(50)])
    settings = DatasetSettings(name="t", data_dir=str(folder), labels=["a", "b"], test_split="test", test_holdout=0.2)
    source = held_out_source(settings)
    assert source.split is None and "held out" in source.describe(10) and "no test split" in source.describe(10)
    train = without_holdout(load_split(settings, "train"), source).dataset["sentence"]
    test = load_test(settings, source).dataset["sentence"]
    assert len(test) == 10 and len(train) == 40 and not set(train) & set(test)
    assert list(holdout_rows(50, 0.2)) == list(holdout_rows(50, 0.2))  # the same rows for every run
    (folder / "test.jsonl").write_text(json.dumps({"sentence": "own test row", "label": 0}) + "\n")
    assert held_out_source(settings).split == "test"  # a test file of its own: nothing held out of train
    assert len(without_holdout(load_split(settings, "train"), held_out_source(settings)).dataset) == 50
    hub = DatasetSettings(name="ag", hub_id="x/ag", labels=["a", "b"], hub_split_names={"validation": "test"},
                          test_split="test")  # fmt: skip
    assert held_out_source(hub).split is None  # the hub's test split is this dataset's validation: held out instead


def test_t_interval_on_known_numbers():
    iv = t_interval([1.0, 2.0, 3.0])
    t_975_2 = 4.302652729911275  # Student t quantile, 2 degrees of freedom (tables)
    assert (iv.n, iv.mean, iv.std) == (3, 2.0, 1.0)
    assert iv.low == pytest.approx(2 - t_975_2 / math.sqrt(3)) and iv.high == pytest.approx(2 + t_975_2 / math.sqrt(3))
    five = t_interval([0.80, 0.82, 0.84, 0.86, 0.88])  # std 0.0316, t(0.975, 4) = 2.776445
    assert five.half_width == pytest.approx(2.776445105 * math.sqrt(0.001) / math.sqrt(5))
    assert t_interval([0.5]).low == -math.inf and t_interval([]).n == 0


def test_verdict_names_a_winner_only_when_its_interval_is_clear():
    clear = verdict({"a": t_interval([0.90, 0.91, 0.92]), "b": t_interval([0.70, 0.71, 0.72])})
    assert (clear.best, clear.clear, clear.text()) == ("a", True, "**a**")
    close = verdict({"a": t_interval([0.80, 0.82, 0.84]), "b": t_interval([0.80, 0.83, 0.86])})
    assert close.best == "b" and not close.clear and close.text().startswith(NO_CLEAR_WINNER)
    loss = verdict({"a": t_interval([0.30, 0.31, 0.32]), "b": t_interval([0.50, 0.51, 0.52])}, higher_is_better=False)
    assert loss.best == "a" and loss.clear
    assert verdict({"a": t_interval([])}).best is None


def test_every_method_yaml_declares_a_search_range_around_its_default():
    for name in option_names("peft"):
        if name == "none":
            continue
        cfg = compose_compare([f"peft={name}"])
        low, high = cfg.peft.lr_range
        assert low < cfg.peft.lr < high, name
        assert len(search.lr_grid(low, high, 5)) == 5


def test_keys_the_protocol_sets_are_refused_in_one_line():
    cfg = compose_compare([])
    with pytest.raises(ConfigError, match=r"^seed=3: the protocol sets seed in every job; set compare.tune.seed"):
        forwarded_overrides(["model=minilm", "seed=3"], cfg)
    assert forwarded_overrides(["model=minilm", "compare.tune.trials=2"], cfg) == [
        "model=minilm",
        "dataset.test_split=test",
        "dataset.test_holdout=0.1",
    ]


def test_tuning_runs_the_confirm_budget_unless_told_otherwise():
    from peftlab.compare.plan import budget_overrides

    default = compose_compare([]).compare
    assert budget_overrides(default.tune) == budget_overrides(default.confirm)
    longer = compose_compare(["compare.confirm.max_steps=2000", "compare.confirm.max_train_rows=5000"]).compare
    assert budget_overrides(longer.tune) == budget_overrides(longer.confirm)
    assert "trainer.max_steps=2000" in budget_overrides(longer.tune)
    short = compose_compare(["compare.tune.max_steps=200", "compare.tune.val_check_interval=50"]).compare
    assert "trainer.max_steps=200" in budget_overrides(short.tune)
    assert "trainer.max_steps=1000" in budget_overrides(short.confirm)


def test_validation_comes_often_enough_for_the_smallest_budget(caplog):
    from peftlab.compare.plan import budget_overrides, validation_interval

    assert "trainer.val_check_interval=50" in budget_overrides(compose_compare([]).compare.confirm)  # 1,000 steps
    assert [validation_interval(steps, None) for steps in (1000, 130, 12)] == [50, 5, 1]  # divisors within 5 %
    assert validation_interval(500, 100) == 100  # a value given is kept, and warned about when sparse:
    sparse = compose_compare(["compare.confirm.max_steps=500", "compare.confirm.val_check_interval=100"]).compare
    with caplog.at_level("WARNING", logger="peftlab.compare.plan"):
        budget_overrides(sparse.confirm)
    assert "val_check_interval=100 of max_steps=500: the report's 10 % budgets may have no validated" in caplog.text


# -- the report on known numbers, and its page in Chromium ------------------------------------------------------

TEST_SCORES = {  # method -> test accuracy of seeds 0..2 at each of the 4 validations (steps 4, 8, 12, 16)
    "lora": [[0.60, 0.70, 0.80, 0.91], [0.65, 0.72, 0.82, 0.92], [0.70, 0.71, 0.84, 0.93]],
    "ia3": [[0.62, 0.69, 0.75, 0.70], [0.66, 0.73, 0.76, 0.71], [0.69, 0.70, 0.74, 0.72]],
}
DEFAULT_SCORES = {  # the same at each method's default lr: ia3 wins there, lora after tuning
    "lora": [[0.50, 0.55, 0.58, 0.60], [0.50, 0.56, 0.59, 0.61], [0.51, 0.57, 0.60, 0.62]],
    "ia3": [[0.60, 0.70, 0.75, 0.80], [0.61, 0.71, 0.76, 0.81], [0.62, 0.72, 0.77, 0.82]],
}


def _fake_comparison(out):
    """A comparison folder as the stages leave it, with known numbers: 4 validations per run at equal compute."""
    chosen, scores = {}, []
    for method in TEST_SCORES:
        trials = [{"lr": 1e-4, "best": 0.8}, {"lr": 3e-3, "best": 0.9}]
        chosen[method] = {"monitor": "val/accuracy", "default_lr": 1e-3, "lr_range": [1e-4, 1e-2], "tuned_lr": 3e-3,
                          "tuned_best": 0.9, "trials": trials}  # fmt: skip
    arms = [("confirm", 3e-3, TEST_SCORES), ("confirm_default", 1e-3, DEFAULT_SCORES)]
    for stage, lr, by_method in arms:
        _fake_arm(out / stage, lr, by_method, scores)
    (out / "chosen_lr.json").write_text(json.dumps(chosen))
    (out / "test").mkdir()
    (out / "test" / "scores.json").write_text(json.dumps(scores))
    return out


def _fake_arm(folder, lr, by_method, scores):
    for method, seeds in by_method.items():
        for seed, tests in enumerate(seeds):
            run = _fake_run(folder / method / str(seed), method, seed, lr, [0.5 + 0.1 * k for k in range(1, 5)])
            for k, value in enumerate(tests, start=1):
                scores.append({"run": str(run), "step": 4 * k, "method": method, "seed": seed,
                               "test/accuracy": value, "test_rows_from": "10 % of train held out"})  # fmt: skip


def _fake_run(run, method, seed, lr, validations):
    """A finished job's folder: metrics.json (a validation every 4 steps) and config.yaml."""
    run.mkdir(parents=True)
    history = [{"epoch": 0, "step": 4 * k, "train_time_s": float(k), "train_tokens": 100 * k, "val/accuracy": value}
               for k, value in enumerate(validations, start=1)]  # fmt: skip
    report = {"method": method, "model": "twin", "dataset": "demo", "seed": seed, "monitor": "val/accuracy",
              "best": max(history, key=lambda h: h["val/accuracy"]), "history": history, "adapter_bytes": 1,
              "train_time_s": float(len(history)), "params": {"trainable": 10, "total": 1000, "trainable_pct": 1.0},
              "samples_per_s": 1.0, "peak_memory": {"rss_mb": 1.0}, "train_tokens": 100 * len(history)}  # fmt: skip
    (run / "metrics.json").write_text(json.dumps(report))
    OmegaConf.save({"peft": {"lr": lr}, "seed": seed}, run / "config.yaml")
    return run


def test_the_chosen_lr_is_the_trial_with_the_best_validation_of_its_run(tmp_path):
    """A trial counts with its best validation, not its last; equal bests go to the smaller rate."""
    trials = {1e-4: [0.50, 0.60], 1e-3: [0.72, 0.65], 1e-2: [0.55, 0.70]}  # 1e-2 ends higher, 1e-3 peaked higher
    for job, (lr, validations) in enumerate(trials.items()):
        _fake_run(tmp_path / "clear" / str(job), "lora", 0, lr, validations)
    chosen = search.choose_lr([tmp_path / "clear"], 5e-4, [1e-4, 1e-2])
    assert (chosen["tuned_lr"], chosen["tuned_best"], chosen["default_lr"]) == (1e-3, 0.72, 5e-4)
    assert [t["lr"] for t in chosen["trials"]] == [1e-4, 1e-3, 1e-2]
    for job, lr in enumerate([3e-3, 3e-4]):  # written largest first: the order of the folders does not decide
        _fake_run(tmp_path / "tie" / str(job), "lora", 0, lr, [0.6, 0.8])
    assert search.choose_lr([tmp_path / "tie"], 5e-4, [1e-4, 1e-2])["tuned_lr"] == 3e-4


def _tuned(tmp_path, score, extend=2):
    """search.tune over lr_range [1e-4, 1e-2] (3 trials) with each trial's validation given by score(lr): the sweeps
    write finished jobs' folders as a training sweep would; choose_lr and the extension rule read them."""
    from peftlab.compare.plan import Plan

    plan = Plan(methods=["lora"], out=tmp_path, forwarded=[], trials=3, tune_seed=0, tune_steps=4, tune_overrides=[],
                seeds=[0, 1, 2],
                confirm_overrides=[], cwd=tmp_path, lr_ranges={"lora": [1e-4, 1e-2]}, default_lrs={"lora": 5e-4},
                extend=extend)  # fmt: skip
    stages_run = []

    def sweep(plan, stage, method, lrs, seeds, extra, reach=None, job=None):
        stages_run.append((stage, lrs))
        for job, lr in enumerate(lrs):
            _fake_run(plan.out / stage / method / str(job), method, seeds[0], lr, [score(lr)])
        return plan.out / stage / method

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stages, "run_sweep", sweep)
        return search.tune(plan, "lora"), stages_run


def test_a_rate_at_the_top_of_the_range_is_tuned_again_one_grid_step_past_it(tmp_path):
    chosen, ran = _tuned(tmp_path, score=lambda lr: math.log10(lr))  # higher is better all the way up
    assert ran == [("tune", [1e-4, 1e-3, 1e-2]), ("tune_ext1", [0.1]), ("tune_ext2", [1.0])]
    assert (chosen["tuned_lr"], chosen["origin"], chosen["extensions"]) == (1.0, "past the range", 2)
    assert [t["lr"] for t in chosen["trials"]] == [1e-4, 1e-3, 1e-2, 0.1, 1.0]


def test_the_extension_stops_where_the_rate_past_the_end_is_worse_or_the_end_is_a_plateau(tmp_path):
    peaked, ran = _tuned(tmp_path / "peak", score=lambda lr: -abs(math.log10(lr) + 4.4))  # best near 4e-5
    assert ran == [("tune", [1e-4, 1e-3, 1e-2]), ("tune_ext1", [1e-5])]
    assert (peaked["tuned_lr"], peaked["origin"], peaked["extensions"]) == (1e-4, "grid", 1)
    flat, ran = _tuned(tmp_path / "flat", score=lambda lr: 0.5 if lr < 5e-3 else 0.4)  # the two smallest level
    assert ran == [("tune", [1e-4, 1e-3, 1e-2])] and flat["tuned_lr"] == 1e-4 and flat["extensions"] == 0
    off, ran = _tuned(tmp_path / "off", score=lambda lr: math.log10(lr), extend=0)
    assert len(ran) == 1 and off["tuned_lr"] == 1e-2 and off["origin"] == "grid"


def test_the_pareto_front_holds_the_methods_no_other_beats_on_score_and_cost_at_once():
    from peftlab.compare.costs import pareto_front

    # full: best and largest; lora: a little worse, far smaller; ia3: worse than lora and larger; prefix: no score
    costs = {
        "full": {"score": 0.90, "peak_rss_mb": 900.0},
        "lora": {"score": 0.88, "peak_rss_mb": 300.0},
        "ia3": {"score": 0.80, "peak_rss_mb": 350.0},
        "head_only": {"score": 0.70, "peak_rss_mb": 250.0},
        "prefix": {"score": math.nan, "peak_rss_mb": 100.0},
    }
    assert pareto_front(costs, "peak_rss_mb", higher_better=True) == ["full", "lora", "head_only"]
    losses = {m: {**c, "score": 1 - c["score"]} for m, c in costs.items()}  # a loss: lower is better, same front
    assert pareto_front(losses, "peak_rss_mb", higher_better=False) == ["full", "lora", "head_only"]
    tie = {"a": {"score": 0.8, "peak_rss_mb": 100.0}, "b": {"score": 0.8, "peak_rss_mb": 100.0}}
    assert pareto_front(tie, "peak_rss_mb", higher_better=True) == ["a", "b"]  # neither beats the other


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = _fake_comparison(tmp_path_factory.mktemp("report"))
    return out, write_compare_report(out)


def test_report_verdicts_on_known_numbers(report):
    out, result = report
    flops = {r["budget"]: r for r in result["results"] if r["axis"] == "flops"}
    assert flops[0.1]["verdict"].best is None  # the first validation is at 25 % of the compute
    assert flops[0.25]["verdict"].text().startswith(NO_CLEAR_WINNER)  # 0.65 ± 0.05 against 0.657 ± 0.035
    assert flops[1.0]["verdict"].text() == "**lora**"  # 0.92 ± 0.01 against 0.71 ± 0.01: clear
    assert flops[1.0]["intervals"]["lora"].mean == pytest.approx(0.92)
    text = (out / "summary.md").read_text()
    assert "| 100 % of training FLOPs (1.61e+06 FLOPs) | **lora**: 0.9200 ± 0.0100 [0.8952, 0.9448] (n=3) |" in text
    assert "| lora | 0.001 | 0.003 | × 3 |" in text and "10 % of train held out" in text
    # what tuning changed: ia3 wins at the default rates (0.81 against 0.61), lora at the tuned ones
    assert (
        "| 100 % of training FLOPs | **ia3**: 0.8100 ± 0.0100 [0.7852, 0.8348] (n=3) "
        "| **lora**: 0.9200 ± 0.0100 [0.8952, 0.9448] (n=3) |"
    ) in text
    assert "| ia3 | 0.001 | 0.8100 ± 0.0100 [0.7852, 0.8348] (n=3) | 0.003 | 0.7100 " in text
    assert "| lora | 0.001 | 0.6100 ± 0.0100 [0.5852, 0.6348] (n=3) | 0.003 | 0.9200 " in text
    assert "| +0.3100 | 2 → 1 |" in text and "| -0.1000 | 1 → 2 |" in text
    rows = (out / "summary.csv").read_text().splitlines()
    assert rows[0].startswith("arm,axis,budget") and {r.split(",")[0] for r in rows[1:]} == {"tuned", "default"}
    # equal costs (the fake runs share params, adapter size, memory and tokens): the better score alone is the front
    assert "| lora | 10 | 0.00 | 1 | 1.61e+06 | 4.0 | 0.9200 | peak memory, training FLOPs |" in text
    assert "| ia3 | 10 | 0.00 | 1 | 1.61e+06 | 4.0 | 0.7100 | – |" in text
    assert "pareto" in result["plots"]
    kept_default = {"tuned_lr": 1e-3, "default_lr": 1e-3}  # tuning kept the default: its confirm runs are that arm
    assert stages.default_arm_folder(out, "lora", kept_default) == out / "confirm" / "lora"


def test_report_html_in_headless_chromium_shows_the_verdict_and_every_plot(report):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it with apt-get)")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    out, result = report
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=flags)
        page = browser.new_page()
        offline = ("file:", "data:")  # the page must need nothing but itself
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(offline) else r.abort())
        page.goto((out / "report.html").as_uri())
        rows = page.locator("#verdict tbody tr")
        assert rows.count() == 8  # 4 budgets × (FLOPs, seconds)
        assert "lora" in rows.nth(3).locator("td").nth(1).text_content()
        assert page.locator("#learning-rates tbody tr").count() == 2
        assert (
            page.locator("#tuning-verdict tbody tr").count() == 8
            and page.locator("#tuning-effect tbody tr").count() == 2
        )
        for name in result["plots"]:
            image = page.locator(f"#plot-{name} img")
            assert image.evaluate("img => img.complete && img.naturalWidth > 100"), name
        assert page.locator("#commands").count() == 1
        assert page.locator("#versions tr").count() >= 5
        browser.close()


def test_command_line_refuses_in_one_line_and_records_itself(tmp_path):
    """`python -m peftlab.compare`: the command is written into its folder before anything is checked or run."""
    command = [sys.executable, "-m", "peftlab.compare", "seed=3", f"compare.out={tmp_path / 'out'}"]
    proc = forked_commands.run(command, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: seed=3: the protocol sets seed in every job; set compare.tune.seed, compare.confirm.seeds"
    )
    assert "peftlab.compare seed=3" in (tmp_path / "out" / "command.txt").read_text()


def _halved(tmp_path, score):
    """search.tune with 5 trials over [1e-4, 1e-2], rungs at steps 4 and 12, eta 3; score(lr, step) is a trial's
    validation at a step (one every 4). The fake sweep writes or continues jobs' folders as training would."""
    from peftlab.compare.plan import Plan

    plan = Plan(methods=["lora"], out=tmp_path, forwarded=[], trials=5, tune_seed=0, tune_steps=12,
                tune_overrides=["trainer.max_steps=12", "trainer.val_check_interval=4"], seeds=[0, 1, 2],
                confirm_overrides=[], cwd=tmp_path, lr_ranges={"lora": [1e-4, 1e-2]}, default_lrs={"lora": 5e-4},
                extend=1, rung_steps=[4, 12], eta=3)  # fmt: skip
    ran = []

    def sweep(plan, stage, method, lrs, seeds, extra, reach=None, job=None):
        ran.append((stage, lrs, reach, job, extra))
        folder = plan.out / stage / method
        for number, lr in enumerate(lrs):
            run = folder / (job or str(number))
            shutil.rmtree(run, ignore_errors=True)
            _fake_run(run, method, seeds[0], lr, [score(lr, step) for step in range(4, reach + 1, 4)])
        return folder

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stages, "run_sweep", sweep)
        return search.tune(plan, "lora"), ran


def test_halving_resumes_the_best_third_to_the_budget_and_chooses_among_them_only(tmp_path):
    lead_at_4 = {1e-4: 0.5, 3.16e-4: 0.55, 1e-3: 0.6, 3.16e-3: 0.7, 1e-2: 0.75}
    at_12 = {3.16e-3: 0.95, 1e-2: 0.8}  # the largest rate leads at the first rung, a smaller one at the budget

    chosen, ran = _halved(tmp_path, lambda lr, step: lead_at_4[lr] if step <= 4 else at_12[lr])
    first, *going_on = ran
    assert first[:4] == ("tune", [1e-4, 0.000316, 0.001, 0.00316, 0.01], 4, None)
    assert "trainer.max_steps=4" in first[4] and "optim.schedule_steps=12" in first[4]  # one schedule, stopped early
    assert "trainer.max_steps=12" not in first[4]
    assert [(lrs, reach, job) for _, lrs, reach, job, _ in going_on] == [([0.01], 12, "4"), ([0.00316], 12, "3")]
    assert all("resume=auto" in extra and "trainer.max_steps=12" in extra for *_, extra in going_on)
    assert (chosen["tuned_lr"], chosen["tuned_best"], chosen["extensions"]) == (0.00316, 0.95, 0)
    assert [t["steps"] for t in chosen["trials"]] == [4, 4, 4, 12, 12] and chosen["rungs"] == [4, 12]


def test_halving_extends_past_the_end_with_a_trial_on_the_whole_budget(tmp_path):
    chosen, ran = _halved(tmp_path, lambda lr, step: math.log10(lr) + step / 100)  # larger is better everywhere
    stage, lrs, reach, job, extra = ran[-1]
    assert (stage, lrs, reach, job) == ("tune_ext1", [0.0316], 12, None)  # one grid step (× 3.16) past the top
    assert "trainer.max_steps=12" in extra and "resume=auto" not in extra
    assert (chosen["tuned_lr"], chosen["origin"]) == (0.0316, "past the range")


def test_halving_rungs_are_validated_steps_of_the_tuning_budget():
    from peftlab.compare.plan import rung_steps

    assert rung_steps([0.25, 1.0], 500, 25) == [125, 500]
    assert rung_steps([0.3, 1.0], 500, 25) == [150, 500]  # rounded down to a validation
    assert rung_steps([1.0], 500, 25) == []  # every trial on the whole budget
    for bad in ([0.5], [0.5, 0.25, 1.0], [0.0, 1.0], []):
        with pytest.raises(ConfigError, match=r"compare.tune.rungs=.*increasing fractions"):
            rung_steps(bad, 500, 25)
    with pytest.raises(ConfigError, match="validate more often"):
        rung_steps([0.5, 0.55, 1.0], 500, 100)  # both rungs would end at step 200

"""DDP on CPU (gloo, 2 processes) as users run it: `python train.py hardware=ddp ...`, single runs and -m sweeps."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO, eval_config

from peftlab.run.evaluation import evaluate

TRAIN_ROWS, VAL_ROWS = 64, 41  # 41: odd, so a padding sampler would score one row twice (on 42 rows)
TINY = [
    "model=deberta_v3_tiny",
    f"dataset.max_train_rows={TRAIN_ROWS}",
    f"dataset.max_eval_rows={VAL_ROWS}",
    "dataset.batch_size=8",
    "dataset.eval_batch_size=8",
    "trainer.max_epochs=1",
    "trainer.accumulate_grad_batches=2",
    "peft.lr=5e-3",
    "trainer.enable_progress_bar=false",
    "~callbacks.progress_bar",
]
DDP = ["hardware=ddp", "hardware.devices=2", "hardware.accelerator=cpu"]


# The training command as a checkout's script and as the installed package's module (what peftlab.compare runs).
ENTRIES = {"train.py": [str(REPO / "train.py")], "-m peftlab.train": ["-m", "peftlab.train"]}


def train_cli(*args: str, cwd=REPO, timeout: int = 400, entry: str = "train.py") -> subprocess.CompletedProcess:
    """`python train.py ...` (or entry=`-m peftlab.train`); tests/ on PYTHONPATH for the ShardProbe callback."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, *ENTRIES[entry], *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ddp") / "run"
    proc = train_cli(
        *DDP,
        *TINY,
        "+callbacks.shard_probe._target_=shard_probe.ShardProbe",
        f"+callbacks.shard_probe.out_dir={run_dir}",
        f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return run_dir, proc


def test_ranks_train_and_validate_on_disjoint_shards(ddp_run):
    run_dir, _ = ddp_run
    shards = [json.loads((run_dir / f"shard-rank{r}.json").read_text()) for r in (0, 1)]
    assert [s["world_size"] for s in shards] == [2, 2]
    train0, train1 = (set(s["train"]) for s in shards)
    assert train0 and train1 and not train0 & train1
    assert train0 | train1 == set(range(TRAIN_ROWS))
    val0, val1 = (s["val"] for s in shards)
    assert not set(val0) & set(val1)
    assert sorted(val0 + val1) == list(range(VAL_ROWS))  # every row once: no padding duplicates
    assert sum(s["val_rows_seen"] for s in shards) == VAL_ROWS
    assert [s["train_rows_seen"] for s in shards] == [TRAIN_ROWS // 2] * 2


def test_one_metrics_json_with_the_effective_batch(ddp_run):
    run_dir, proc = ddp_run
    assert sorted(run_dir.rglob("metrics.json")) == [run_dir / "metrics.json"]
    assert sorted(run_dir.rglob("config.yaml")) == [run_dir / ".hydra" / "config.yaml", run_dir / "config.yaml"]
    report = json.loads((run_dir / "metrics.json").read_text())
    assert report["effective_batch_size"] == 8 * 2 * 1 * 2
    assert report["batch"] == {"per_device": 8, "devices": 2, "num_nodes": 1, "accumulate_grad_batches": 2, "total": 32}
    assert report["train_samples"] == TRAIN_ROWS  # summed over both processes
    per_rank = report["peak_memory_per_rank"]  # each process's own peak, gathered from both
    assert [r["rank"] for r in per_rank] == [0, 1] and all(r["rss_mb"] > 100 for r in per_rank)
    assert per_rank[0]["rss_mb"] <= report["peak_memory"]["rss_mb"]  # the latter also covers writing adapter/
    assert report["global_step"] == TRAIN_ROWS // 32
    assert "effective batch size 32 = 8 per device × 2 devices × 1 nodes × 2 accumulated" in proc.stdout
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()


def test_validation_metric_equals_single_process_evaluation_of_the_adapter(ddp_run, tmp_path):
    run_dir, _ = ddp_run
    report = json.loads((run_dir / "metrics.json").read_text())
    best = report["best"]
    cfg = eval_config(
        [f"adapter={run_dir}", f"dataset.max_eval_rows={VAL_ROWS}", "dataset.eval_batch_size=8"], tmp_path
    )
    (row,) = evaluate(cfg)
    assert row["rows"] == VAL_ROWS
    assert 0.0 < row["val/accuracy"] < 1.0  # not a degenerate score that any row count would reproduce
    # Same rows, same weights; only the batches differ (one process: rows 0-7, ...; two: 0, 2, 4, ...), so
    # padding lengths differ and logits agree to float rounding, not bit for bit.
    assert best["val/accuracy"] == pytest.approx(row["val/accuracy"], abs=1e-6)
    assert best["val/f1"] == pytest.approx(row["val/f1"], abs=1e-6)
    assert best["val/loss"] == pytest.approx(row["val/loss"], rel=0.05)  # mean of the two ranks' means


@pytest.mark.slow  # 50 s: two 2-process jobs; DDP runs and -m sweeps each have fast tests of their own
@pytest.mark.parametrize("entry", ENTRIES)
def test_multirun_sweep_runs_each_job_as_its_own_process_group(tmp_path, entry):
    """-m with DDP: 2 sweep points x 2 processes -> 2 job folders, one metrics.json each, no nested sweeps."""
    sweep = tmp_path / "sweep"
    proc = train_cli("-m", *DDP, *TINY, "seed=0,1", f"hydra.sweep.dir={sweep}", cwd=tmp_path, timeout=500, entry=entry)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("metrics.json")) == [
        sweep.relative_to(tmp_path) / str(i) / "metrics.json" for i in (0, 1)
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["sweep"]  # no outputs/ or multirun/ from a re-run sweep
    for i, seed in enumerate((0, 1)):
        job = sweep / str(i)
        report = json.loads((job / "metrics.json").read_text())
        assert report["seed"] == seed and report["batch"]["devices"] == 2
        assert f"seed={seed}" in (job / ".hydra" / "overrides.yaml").read_text()
        assert "MULTIRUN" in (job / ".hydra" / "hydra.yaml").read_text()  # the sweep's record, kept
    assert proc.stdout.count("as its own process group") == 2
    assert (sweep / "summary.csv").is_file()  # the sweep report read both jobs


def test_a_sweep_job_is_rerun_with_the_command_it_was_started_with(monkeypatch):
    """run_as_process_group re-runs a job as the process was started: `-m peftlab.train` or a script (train.py)."""
    from importlib.machinery import ModuleSpec

    import __main__
    from peftlab.run import distributed

    monkeypatch.setattr(__main__, "__spec__", ModuleSpec("peftlab.train", None))
    assert distributed._script_command() == [sys.executable, "-m", "peftlab.train"]
    monkeypatch.setattr(__main__, "__spec__", None)
    monkeypatch.setattr(sys, "argv", ["train.py", "seed=1"])
    assert distributed._script_command() == [sys.executable, os.path.abspath("train.py")]


def test_two_nodes_started_by_torchrun_share_the_data_and_write_once(tmp_path):
    """hardware.num_nodes=2 as a cluster runs it: torchrun on every node (here two on localhost, one process each)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}
    overrides = [*TINY, "hardware=ddp", "hardware.accelerator=cpu", "hardware.devices=1", "hardware.num_nodes=2",
                 "+callbacks.shard_probe._target_=shard_probe.ShardProbe", f"+callbacks.shard_probe.out_dir={run_dir}",
                 f"paths.output_dir={run_dir}"]  # fmt: skip

    def node_command(node: int) -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={node}",
                "--nproc_per_node=1", "--master_addr=127.0.0.1", f"--master_port={port}", str(REPO / "train.py"),
                *overrides, f"hydra.run.dir={tmp_path / f'node{node}'}"]  # fmt: skip

    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True, "cwd": tmp_path, "env": env}
    nodes = [subprocess.Popen(node_command(node), **pipes) for node in (0, 1)]
    logs = [node.communicate(timeout=400)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    shards = [json.loads((run_dir / f"shard-rank{r}.json").read_text()) for r in (0, 1)]
    assert [s["world_size"] for s in shards] == [2, 2]
    assert not set(shards[0]["train"]) & set(shards[1]["train"])
    assert sorted(run_dir.rglob("metrics.json")) == [run_dir / "metrics.json"]  # written by global rank 0 only
    report = json.loads((run_dir / "metrics.json").read_text())
    assert report["batch"] == {"per_device": 8, "devices": 1, "num_nodes": 2, "accumulate_grad_batches": 2, "total": 32}
    assert report["train_samples"] == TRAIN_ROWS
    assert "effective batch size 32 = 8 per device × 1 devices × 2 nodes × 2 accumulated" in logs[0]

"""Interruptions: kill -9 + resume=auto ends with the uninterrupted run's weights; SIGTERM saves; broken checkpoints."""

import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import forked_commands
import pytest
import torch
from conftest import REPO, TEST_OVERRIDES, compose_config

from peftlab.config import validate
from peftlab.errors import ConfigError
from peftlab.run.resume import checkpoint_to_resume
from peftlab.trainer.checkpoint_io import AtomicCheckpointIO

STEPS = 24  # 2 epochs of 12 batches: the kill lands mid-epoch, the resumed run crosses an epoch boundary
# Dropout stays on (the twin's and LoRA's defaults): RngState puts the generators in each checkpoint, so the resumed
# steps draw the same masks; the sampler's order comes from (seed, epoch) and its position from the DataModule state.
RUN = [
    "model=deberta_v3_tiny",
    "dataset=demo",
    "dataset.max_train_rows=96",
    "dataset.max_eval_rows=16",
    "dataset.batch_size=8",
    f"trainer.max_steps={STEPS}",
    "trainer.max_epochs=2",
    "callbacks.model_checkpoint.monitor=null",
    "callbacks.model_checkpoint.save_top_k=-1",
    "+callbacks.model_checkpoint.every_n_train_steps=3",
    "+callbacks.last_checkpoint.every_n_train_steps=3",
    "seed=3",
]


def _cmd(out, *extra):
    return [sys.executable, str(REPO / "train.py"), *TEST_OVERRIDES, *RUN, f"paths.output_dir={out}",
            f"hydra.run.dir={out}", *extra]  # fmt: skip


def _trainable(ckpt):
    return torch.load(ckpt, map_location="cpu", weights_only=True)


DDP = ["hardware=ddp", "hardware.devices=2", "hardware.accelerator=cpu"]  # 2 gloo processes: 6 batches per epoch


# One process is `slow` (26 s): the 2-process case kills and resumes the same way, plus the sharded order.
@pytest.mark.parametrize(
    "processes", [pytest.param([], marks=pytest.mark.slow), DDP], ids=["1 process", "ddp 2 processes"]
)
def test_kill_9_then_resume_auto_ends_with_the_uninterrupted_weights(tmp_path, processes):
    full, cut = tmp_path / "full", tmp_path / "cut"
    full_log = tmp_path / "full.log"  # the reference run goes alongside (2 cores: faster than in turn)
    uninterrupted = forked_commands.Forked(_cmd(full, *processes), REPO, stdout=full_log)
    first = forked_commands.Forked(_cmd(cut, "resume=auto", *processes), REPO, stdout=Path(os.devnull),
                                   new_session=True)  # fmt: skip
    ckpts = cut / "checkpoints"
    deadline = time.monotonic() + 240
    while len(list(ckpts.glob("epoch*.ckpt"))) < 3 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # the 3rd checkpoint (step 9, mid-epoch 0) appeared: kill at whatever step it is now
    assert first.poll() is None, "the run ended before it could be killed"
    os.killpg(first.pid, signal.SIGKILL)  # every rank: they share the session
    first.wait(timeout=30)
    steps = STEPS // 2 if processes else STEPS  # max_epochs=2 ends a 2-process run at 12 steps
    killed_at = _trainable(ckpts / "last.ckpt")["global_step"]
    assert 0 < killed_at < steps

    second = forked_commands.run(_cmd(cut, "resume=auto", *processes), cwd=REPO, timeout=300)
    assert uninterrupted.wait(timeout=300) == 0, full_log.read_text()[-3000:]
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resume=auto: continuing from" in second.stdout + second.stderr
    done, reference = _trainable(ckpts / "last.ckpt"), _trainable(full / "checkpoints" / "last.ckpt")
    assert done["global_step"] == reference["global_step"] == steps
    assert done["state_dict"].keys() == reference["state_dict"].keys()
    for name, value in reference["state_dict"].items():  # same ops in the same order on CPU: bit-identical
        assert torch.equal(done["state_dict"][name], value), name


def test_sigterm_mid_epoch_saves_last_ckpt_and_resume_continues(tmp_path):
    log_file = tmp_path / "sigterm.log"
    proc = forked_commands.Forked(_cmd(tmp_path, "resume=auto"), REPO, stdout=log_file)
    deadline = time.monotonic() + 240
    while not list((tmp_path / "checkpoints").glob("epoch*.ckpt")) and time.monotonic() < deadline:
        assert proc.poll() is None
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=120)
    log = log_file.read_text()
    assert proc.returncode == 128 + signal.SIGTERM, log[-3000:]
    assert "Traceback" not in log
    last = tmp_path / "checkpoints" / "last.ckpt"
    saved_at = _trainable(last)["global_step"]
    assert f"SIGTERM: saved {last} at step {saved_at}" in log and 0 < saved_at < STEPS

    again = forked_commands.run(_cmd(tmp_path, "resume=auto"), cwd=REPO, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert _trainable(last)["global_step"] == STEPS


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Two real checkpoints of a short run (steps 3 and 6) and last.ckpt."""
    out = tmp_path_factory.mktemp("ckpts")
    done = forked_commands.run(_cmd(out, "trainer.max_steps=6"), cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out / "checkpoints"


def test_truncated_last_ckpt_warns_and_falls_back_to_the_newest_good_one(checkpoints, caplog):
    last = checkpoints / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # a copy cut short
    settings = validate(compose_config([*RUN, "resume=auto"], output_dir=checkpoints.parent))
    newest = max(checkpoints.glob("epoch*.ckpt"), key=lambda p: p.stat().st_mtime)
    with caplog.at_level("WARNING"):
        assert checkpoint_to_resume(settings.ckpt_path, settings.resume, checkpoints) == str(newest)
    assert f"{last} is not a readable checkpoint" in caplog.text


def test_a_deepspeed_checkpoint_folder_is_resumed_and_a_cut_one_skipped(tmp_path, caplog):
    """DeepSpeed saves last.ckpt as a folder (latest -> tag folder with the model states): resume=auto takes it."""
    folder = tmp_path / "checkpoints"

    def deepspeed_folder(name: str, finished: bool) -> Path:
        states = folder / name / "checkpoint"
        states.mkdir(parents=True)
        (states / "mp_rank_00_model_states.pt").write_bytes(b"states")
        if finished:
            (folder / name / "latest").write_text("checkpoint")
        return folder / name

    older = deepspeed_folder("epoch00-step000003.ckpt", finished=True)
    settings = validate(compose_config([*RUN, "resume=auto"], output_dir=tmp_path))
    last = deepspeed_folder("last.ckpt", finished=True)
    # is_file() would have restarted from step 0
    assert checkpoint_to_resume(settings.ckpt_path, settings.resume, folder) == str(last)
    (last / "latest").unlink()  # killed mid-save
    with caplog.at_level("WARNING"):
        assert checkpoint_to_resume(settings.ckpt_path, settings.resume, folder) == str(older)
    assert "without DeepSpeed's 'latest' file" in caplog.text


def test_adapter_weights_are_read_from_a_deepspeed_folder_through_lightnings_converter(tmp_path, monkeypatch):
    import pytorch_lightning.utilities.deepspeed as lightning_deepspeed

    from peftlab.run.outputs import load_trainable_weights

    module = torch.nn.Sequential(torch.nn.Linear(2, 2))
    trained = {"0.weight": torch.full((2, 2), 7.0), "0.bias": torch.zeros(2)}
    calls = []

    def convert(checkpoint_dir, output_file, tag=None):  # stands in for deepspeed's zero_to_fp32 (GPU-only here)
        calls.append(Path(checkpoint_dir))
        return {"state_dict": trained, "global_step": 3}

    monkeypatch.setattr(lightning_deepspeed, "convert_zero_checkpoint_to_fp32_state_dict", convert)
    (tmp_path / "best.ckpt").mkdir()
    load_trainable_weights(module, str(tmp_path / "best.ckpt"))
    assert calls == [tmp_path / "best.ckpt"] and torch.equal(module[0].weight, trained["0.weight"])


def test_broken_explicit_ckpt_path_is_one_line_error(tmp_path):
    bad = tmp_path / "broken.ckpt"
    bad.write_bytes(b"not a checkpoint")
    settings = validate(compose_config([*RUN, f"ckpt_path={bad}"], output_dir=tmp_path))
    with pytest.raises(ConfigError, match=re.escape(f"ckpt_path={bad}: not a readable checkpoint (")):
        checkpoint_to_resume(settings.ckpt_path, settings.resume, tmp_path)
    cli = forked_commands.run(_cmd(tmp_path, f"ckpt_path={bad}"), cwd=REPO, timeout=120)
    assert cli.returncode == 2
    assert cli.stderr.strip().splitlines()[-1].startswith(f"error: ckpt_path={bad}: not a readable checkpoint (")


def test_a_crash_during_save_leaves_the_old_last_ckpt_intact(checkpoints, monkeypatch, tmp_path):
    last = tmp_path / "last.ckpt"
    last.write_bytes(next(checkpoints.glob("epoch*.ckpt")).read_bytes())
    before = last.read_bytes()

    def crash_midway(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")  # part of the new file is on disk, then the process dies
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, last)
    monkeypatch.undo()
    assert last.read_bytes() == before and _trainable(last)["global_step"] > 0
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temp file left behind


def test_last_ckpt_is_the_latest_validation_even_when_the_metric_did_not_improve(tmp_path):
    """Lightning 2.6 writes save_last only with a new top-k checkpoint; resume=auto must not go back to the best."""
    from peftlab.run import fit

    base = [o for o in RUN if "checkpoint" not in o and "max_steps" not in o]
    frozen = ["peft.lr=1e-12", "trainer.max_epochs=3", "trainer.max_steps=-1"]  # the same accuracy every epoch
    result = fit(compose_config([*base, *frozen], output_dir=tmp_path))
    (best,) = (tmp_path / "checkpoints").glob("epoch*.ckpt")
    assert _trainable(best)["global_step"] == 12  # epoch 0's: later epochs did not beat it
    assert _trainable(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == result.trainer.global_step == 36


def test_a_run_paused_before_its_schedule_ends_and_resumed_is_the_uninterrupted_run(tmp_path):
    """optim.schedule_steps keeps the learning-rate schedule of the whole run while trainer.max_steps stops it early
    (mid-epoch here); resume=auto then continues to the end: weights bit-identical to one uninterrupted run, and
    metrics.json's curve holds every validation, counted from the first step (compare's successive halving)."""
    whole = [
        f"optim.schedule_steps={STEPS}",
        "trainer.val_check_interval=3",
        "~callbacks.last_checkpoint.every_n_train_steps",
    ]  # last.ckpt after each validation, as by default
    full, paused = tmp_path / "full", tmp_path / "paused"
    for out, extra in ((full, []), (paused, ["trainer.max_steps=9"]), (paused, ["resume=auto"])):
        done = forked_commands.run(_cmd(out, *whole, *extra), cwd=REPO, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    ended, reference = _trainable(paused / "checkpoints" / "last.ckpt"), _trainable(full / "checkpoints" / "last.ckpt")
    assert ended["global_step"] == reference["global_step"] == STEPS
    for name, value in reference["state_dict"].items():
        assert torch.equal(ended["state_dict"][name], value), name
    curves = [json.loads((out / "metrics.json").read_text()) for out in (full, paused)]
    assert (
        [p["step"] for p in curves[1]["history"]]
        == [p["step"] for p in curves[0]["history"]]
        == [3 * k for k in range(1, 9)]
    )
    for key in ("val/loss", "train_tokens"):
        assert [p[key] for p in curves[1]["history"]] == [p[key] for p in curves[0]["history"]], key
    assert curves[1]["train_samples"] == curves[0]["train_samples"] == STEPS * 8
    assert curves[1]["train_time_s"] >= curves[1]["history"][2]["train_time_s"] > 0  # seconds of both attempts

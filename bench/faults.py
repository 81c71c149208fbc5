"""Inject the faults a long run meets and print what survived, against one uninterrupted run with the same seed.

    python bench/faults.py                       # MiniLM + LoRA on the demo set, 80 steps of 16, checkpoint every 5
    python bench/faults.py --steps 120 --seed 1 model=deberta_v3_tiny   # extra args are train.py overrides

Faults: kill -9 at a random step; SIGTERM at a random step (as a spot reclaim sends); last.ckpt cut short (a copy
interrupted mid-write); last.ckpt overwritten with garbage (both: with the newest epoch*.ckpt of the same save,
so the run must fall back to the save before). Each faulted run is restarted with `resume=auto`.
Printed per fault: the step the first attempt had logged when the fault hit, the step it resumed from, steps lost
(trained twice), the final global step, the last validation metric minus the reference's, and the largest absolute
difference of any trainable weight from the reference's (0.0 = bit-identical).
"""

import argparse
import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def train_cmd(out: Path, steps: int, seed: int, extra: list[str]) -> list[str]:
    return [
        sys.executable, str(REPO / "train.py"), f"hydra.run.dir={out}", f"seed={seed}",
        "dataset=demo", "dataset.max_train_rows=640", "dataset.batch_size=16", "dataset.max_eval_rows=400",
        f"trainer.max_steps={steps}", "trainer.max_epochs=100", "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false", "~callbacks.progress_bar",
        "+logger.csv.flush_logs_every_n_steps=1",  # the step each attempt reached is on disk when it dies
        "callbacks.model_checkpoint.monitor=null", "callbacks.model_checkpoint.save_top_k=-1",
        "+callbacks.model_checkpoint.every_n_train_steps=5", "+callbacks.last_checkpoint.every_n_train_steps=5",
        "resume=auto", *extra,
    ]  # fmt: skip


def logged_step(out: Path) -> int:
    """The highest global step with a training loss in the run's CSV log (-1 before the first)."""
    path = out / "csv" / "metrics.csv"
    if not path.is_file():
        return -1
    with path.open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss_step")]
    return max((int(r["step"]) for r in rows), default=-1)


def run(cmd: list[str], log: Path) -> int:
    with log.open("a") as f:
        return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode


def interrupt(cmd: list[str], out: Path, at_step: int, sig: int) -> int:
    """Start a run, send `sig` once its log shows `at_step`; returns the step logged when it was sent."""
    with (out.parent / f"{out.name}.log").open("a") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        while (step := logged_step(out)) < at_step:
            if proc.poll() is not None:
                raise SystemExit(f"{out.name}: the run ended before step {at_step}")
            time.sleep(0.01)
        os.killpg(proc.pid, sig) if sig == signal.SIGKILL else proc.send_signal(sig)
        proc.wait(timeout=300)
    return step


def outcome(out: Path) -> dict:
    last = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    metrics = json.loads((out / "metrics.json").read_text())
    return {"step": last["global_step"], "weights": last["state_dict"], "metric": metrics["last"][metrics["monitor"]]}


def resumed_from(out: Path) -> str:
    lines = (out.parent / f"{out.name}.log").read_text().splitlines()
    said = [line.split("resume=auto: ", 1)[1] for line in lines if "resume=auto: continuing from" in line]
    return said[-1].removeprefix("continuing from ") if said else "scratch"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("outputs/faults"))
    args, extra = parser.parse_known_args()
    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%H-%M-%S")

    def folder(name: str) -> Path:
        return args.out / f"{stamp}-{name}"

    reference = folder("reference")
    assert run(train_cmd(reference, args.steps, args.seed, extra), Path(f"{reference}.log")) == 0, "reference failed"
    ref = outcome(reference)
    print(f"reference: {ref['step']} steps, last {ref['metric']:.4f}", flush=True)

    rows = []
    for name, sig in (("kill -9", signal.SIGKILL), ("SIGTERM", signal.SIGTERM)):
        out, at = folder(name.replace(" ", "").replace("-", "")), rng.randrange(7, args.steps - 10)
        hit = interrupt(train_cmd(out, args.steps, args.seed, extra), out, at, sig)
        saved = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"]
        rows.append((name, out, hit, saved))
    for name, damage in (("last.ckpt cut short", "truncate"), ("last.ckpt garbage", "garbage")):
        out, at = folder(damage), rng.randrange(7, args.steps - 10)
        hit = interrupt(train_cmd(out, args.steps, args.seed, extra), out, at, signal.SIGKILL)
        newest = sorted((out / "checkpoints").glob("epoch*.ckpt"), key=lambda p: p.stat().st_mtime)
        for broken in (out / "checkpoints" / "last.ckpt", newest[-1]):  # the whole latest save is damaged
            data = broken.read_bytes()
            broken.write_bytes(data[: len(data) // 2] if damage == "truncate" else os.urandom(len(data)))
        saved = torch.load(newest[-2], map_location="cpu", weights_only=True)["global_step"]
        rows.append((name, out, hit, saved))

    print("| fault | step logged when hit | resumed from step | steps lost | final step | Δ last metric "
          "| max abs Δ weight |\n|---|---|---|---|---|---|---|")  # fmt: skip
    for name, out, hit, saved in rows:
        code = run(train_cmd(out, args.steps, args.seed, extra), Path(f"{out}.log"))
        if code != 0:
            print(f"| {name} | {hit} | {saved} | – | resume failed (exit {code}) | – | – |")
            continue
        got = outcome(out)
        delta = max((got["weights"][k] - v).abs().max().item() for k, v in ref["weights"].items())
        print(f"| {name} | {hit} | {saved} ({Path(resumed_from(out)).name}) | {max(hit - saved, 0)} | {got['step']} "
              f"| {got['metric'] - ref['metric']:+.4f} | {delta:.3g} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

"""What a run pays besides training: time to the first step, and a -m sweep's cost over the sum of its fits.

    python bench/sweep_overhead.py                      # 3 demo start-ups, then a 6-job SST-2 sweep (seeds 0-5)
    python bench/sweep_overhead.py --jobs 6 --rows 2000 --starts 3

Start-up: `python train.py trainer.max_steps=1` on the demo, `startup_s` from its metrics.json (process start to the
first training batch: imports, config, tokenizer, data, model). Sweep: `python train.py -m seed=0,...` on SST-2 rows
from ../shared/data/sst2, wall-clock from launch to exit against the sum of its jobs' `fit_time_s` (the fits
themselves, validation included). Each command runs as users run it, in its own process, one after another, with
Python's bytecode cache on as a user's shell has it (PYTHONDONTWRITEBYTECODE dropped from the environment: with it set,
every start compiles peftlab's own modules again, ~0.3 s on 2 cores); `--no-bytecode-cache` measures that case.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUIET = ["~callbacks.progress_bar", "trainer.enable_progress_bar=false"]
ENVIRONMENT = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def train(overrides: list[str], timeout: float, flags: tuple[str, ...] = ()) -> float:
    """Runs train.py with the overrides; returns its wall-clock seconds."""
    started = time.perf_counter()
    command = [sys.executable, str(REPO / "train.py"), *flags, *QUIET, *overrides]
    done = subprocess.run(command, cwd=REPO, env=ENVIRONMENT, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def start_ups(count: int, scratch: Path) -> list[dict]:
    figures = []
    for k in range(count):
        out = scratch / f"start{k}"
        wall = train(["trainer.max_steps=1", f"paths.output_dir={out}"], timeout=300)
        metrics = json.loads((out / "metrics.json").read_text())
        figures.append({"startup_s": metrics["startup_s"], "wall_s": wall})
    return figures


def sweep(jobs: int, rows: int, data: Path, scratch: Path) -> dict:
    seeds = ",".join(str(s) for s in range(jobs))
    folder = scratch / "sweep"
    overrides = [f"seed={seeds}", "dataset=sst2", f"dataset.data_dir={data}", f"dataset.max_train_rows={rows}"]
    overrides += ["dataset.max_eval_rows=200", "trainer.max_epochs=1", f"hydra.sweep.dir={folder}"]
    wall = train(overrides, timeout=3600, flags=("-m",))
    fits = [json.loads((folder / str(n) / "metrics.json").read_text())["fit_time_s"] for n in range(jobs)]
    return {"wall_s": wall, "fits_s": fits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "sst2")
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--rows", type=int, default=2000, help="SST-2 training rows per sweep job")
    parser.add_argument("--starts", type=int, default=3, help="demo start-ups to time")
    parser.add_argument("--no-bytecode-cache", action="store_true", help="PYTHONDONTWRITEBYTECODE=1 for every command")
    args = parser.parse_args()
    if args.no_bytecode_cache:
        ENVIRONMENT["PYTHONDONTWRITEBYTECODE"] = "1"
    with tempfile.TemporaryDirectory(prefix="sweep-overhead-") as scratch:
        starts = start_ups(args.starts, Path(scratch))
        up, walls = [s["startup_s"] for s in starts], [s["wall_s"] for s in starts]
        each = ", ".join(f"{u:.2f}" for u in up)
        print(f"start-up to the first step (demo, {args.starts} runs): median {statistics.median(up):.2f} s ({each}); "
              f"whole run median {statistics.median(walls):.2f} s")  # fmt: skip
        if not (args.data / "train.jsonl").is_file():
            print(f"no SST-2 files in {args.data}: the sweep is skipped")
            return
        result = sweep(args.jobs, args.rows, args.data, Path(scratch))
    fits, each = sum(result["fits_s"]), ", ".join(f"{f:.1f}" for f in result["fits_s"])
    print(f"{args.jobs}-job sweep ({args.rows} SST-2 rows each): wall {result['wall_s']:.1f} s, sum of fits "
          f"{fits:.1f} s ({each}) -> cost ratio {result['wall_s'] / fits:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()

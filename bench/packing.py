"""Packed bins (dataset.packing=true) against length grouping (the default) for causal training, in one process.

    python bench/packing.py --data <shared data folder> --rows 256 --seeds 0 1 2
    python bench/packing.py --data ... --model smollm2_tiny --rows 32 --seeds 0 --tasks sql   # a quick check

For each task (text->SQL: rows of ~60-160 tokens; ParaDetox rewrites: ~20-60) and seed, one epoch of the same rows
both ways, the order alternating by seed: grouped, batches of --batch rows; packed, bins of --packing-length
tokens, as many bins per step as carry the same tokens as --batch rows on average, so both take about the same
optimizer steps over the epoch. Tokens/s are real (not padding) tokens over training time, both from metrics.json;
peak RSS is metrics.json's (the kernel's high-water mark, reset per run); validation loss after the epoch on the
same --eval-rows rows. Padding share: padding tokens / all tokens fed, from the loader's own batches.
"""

import argparse
import math
import statistics
import sys
import tempfile
from pathlib import Path

from throughput import _mean_std

from peftlab.compat import prepare_process

prepare_process()

TASKS = {"sql": "text2sql_wikisql", "detox": "paradetox"}


def compose(args, task: str, seed: int, *overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from peftlab.conf import CONF_DIR

    common = [
        f"model={args.model}", f"dataset={task}", f"dataset.data_dir={Path(args.data) / TASKS[task]}",
        f"dataset.max_train_rows={args.rows}", f"dataset.max_eval_rows={args.eval_rows}",
        "dataset.max_eval_generate_rows=1", "peft=lora", "trainer.max_epochs=1", "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false", "~callbacks.progress_bar", "~callbacks.model_checkpoint",
        "~callbacks.last_checkpoint", f"seed={seed}", f"paths.output_dir={tempfile.mkdtemp(prefix='pack-')}",
    ]  # fmt: skip
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=[*common, *overrides])


def padding_share(datamodule) -> float:
    fed = real = 0
    for batch in datamodule.train_dataloader():
        fed += batch["input_ids"].numel()
        real += int(batch["attention_mask"].sum())
    return 1 - real / fed


def bins_per_step(args, task: str) -> int:
    """Bins per step carrying --batch rows' tokens on average."""
    from peftlab.config import validate
    from peftlab.data.datamodule import TextDataModule
    from peftlab.models.loading import load_tokenizer

    settings = validate(compose(args, task, 0))
    data = TextDataModule(settings.dataset, load_tokenizer(settings.model), settings.shape)
    data.setup("fit")
    mean = statistics.fmean(data.train_lengths())
    return max(1, math.ceil(args.batch * mean / args.packing_length))


def one_run(args, task: str, seed: int, packed: bool, bins: int) -> dict:
    from peftlab.run import fit

    mode = [f"dataset.batch_size={args.batch}"]
    if packed:
        mode = ["dataset.packing=true", f"dataset.packing_length={args.packing_length}", f"dataset.batch_size={bins}"]
    result = fit(compose(args, task, seed, *mode))
    report = result.report
    return {
        "tokens_per_s": report["train_tokens"] / report["train_time_s"],
        "rss_mb": report["peak_memory"]["rss_mb"],
        "val_loss": report["last"]["val/loss"],
        "steps": result.trainer.global_step,
        "padding": padding_share(result.datamodule),
    }


def main(args) -> int:
    table = []
    for task in args.tasks:
        bins = bins_per_step(args, task)
        runs = {"grouped": [], "packed": []}
        for seed in args.seeds:
            order = (False, True) if seed % 2 == 0 else (True, False)
            for packed in order:
                row = one_run(args, task, seed, packed, bins)
                runs["packed" if packed else "grouped"].append(row)
                print(task, seed, "packed" if packed else "grouped", row, flush=True)
        for mode, rows in runs.items():
            shape = f"{bins} bins of {args.packing_length}" if mode == "packed" else f"{args.batch} rows"
            table.append((task, f"{mode} ({shape})", rows))
        ratio = [p["tokens_per_s"] / g["tokens_per_s"] for p, g in zip(runs["packed"], runs["grouped"], strict=True)]
        print(f"{task}: packed / grouped tokens/s per seed: {', '.join(f'{r:.2f}' for r in ratio)}", flush=True)
    print(f"\n{args.model}, {args.rows} rows, 1 epoch, seeds {args.seeds}")
    print("| task | batches | tokens/s | peak RSS (MiB) | steps | padding share | val loss |")
    print("|---|---|---|---|---|---|---|")
    for task, mode, rows in table:
        cells = [_mean_std([r[k] for r in rows], d) for k, d in (("tokens_per_s", 1), ("rss_mb", 0))]
        steps = "/".join(sorted({str(r["steps"]) for r in rows}))
        loss = _mean_std([r["val_loss"] for r in rows], 4)
        print(f"| {task} | {mode} | {cells[0]} | {cells[1]} | {steps} | {rows[0]['padding']:.3f} | {loss} |")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the folder holding text2sql_wikisql/ and paradetox/")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--eval-rows", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--packing-length", type=int, default=512, help="tokens per bin (>= each task's max_length)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    sys.exit(main(parser.parse_args()))

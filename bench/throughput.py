"""peftlab vs the peer a user would pick (HF Trainer + peft + DataCollatorWithPadding, with the Trainer's own length
grouping on): same model, data, LoRA, batch, steps; one process.

    python bench/throughput.py --seeds 0 1 2           # MiniLM, SST-2 from ../shared/data/sst2, 300 steps of 32
    python bench/throughput.py --steps 100 --data /path/to/sst2
    python bench/throughput.py --peers grouped         # without the second, ungrouped (random batches) peer line
    python bench/throughput.py dataset.group_by_length=false   # peftlab without length-bucketed batches

Prints samples/s of each and the ratio to each peer, the peak RSS of each phase, each one's SST-2 dev accuracy (all
872 rows), this machine's fp32 matmul peak measured in the same process, and the useful FLOP/s of each side
(bench/useful_flops.py). Both train the same LoRA (the model's peft defaults), lr, warm-up and batch size, with
max_length truncation. peftlab runs with its SST-2 defaults (length-bucketed batches in random order:
data/sampling.py); the peers with HF's.
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from useful_flops import matmul_peak, training_flops_per_token

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = str(REPO.parent / "shared" / "data" / "sst2")


class PeakRss:
    """Sample this process's RSS every 50 ms while a phase runs (ru_maxrss only ever grows over the process)."""

    def __enter__(self):
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        proc = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, proc.memory_info().rss)
            time.sleep(0.05)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def mb(self) -> float:
        return self.peak / 2**20


def overrides(args) -> list[str]:
    return [
        "dataset=sst2",
        f"dataset.data_dir={args.data}",
        f"dataset.max_length={args.max_length}",
        f"dataset.batch_size={args.batch_size}",
        f"trainer.max_steps={args.steps}",
        "trainer.max_epochs=1000",
        "trainer.val_check_interval=null",
        "trainer.check_val_every_n_epoch=1000",  # no validation while timing; one full validation after
        "trainer.enable_progress_bar=false",
        "~callbacks.progress_bar",
        "~callbacks.model_checkpoint",
        "~callbacks.last_checkpoint",
        "peft=lora",
        f"peft.lr={args.lr}",
    ]


PEERS = {"grouped": "peer (HF Trainer, grouped)", "random": "peer (HF Trainer, random)"}


def run_peftlab(cfg) -> dict:
    import pytorch_lightning as pl

    from peftlab.run import fit

    result = fit(cfg)
    (metrics,) = pl.Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False).validate(
        result.module, datamodule=result.datamodule, verbose=False
    )
    report = result.report
    return {
        "samples_per_s": report["samples_per_s"],
        "accuracy": float(metrics["val/accuracy"]),
        "tokens_per_s": report["train_tokens"] / report["train_time_s"],
        "flops_per_token": training_flops_per_token(result.module.model),
    }


def sampling_arguments(grouped: bool) -> dict:
    """The Trainer's length grouping: train_sampling_strategy in transformers 5, group_by_length before it."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    if "train_sampling_strategy" in names:
        return {"train_sampling_strategy": "group_by_length" if grouped else "random"}
    return {"group_by_length": grouped}


def run_peer(cfg, args, seed: int, grouped: bool) -> dict:
    """The way the seeds train: tokenise with datasets.map, HF Trainer, DataCollatorWithPadding, peft LoRA."""
    import datasets
    import numpy as np
    import peft
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from peftlab.config import validate

    settings = validate(cfg)
    name = settings.model.name_or_path
    tokenizer = AutoTokenizer.from_pretrained(name)
    files = {s: str(Path(args.data) / f"{s}.jsonl") for s in ("train", "validation")}
    raw = datasets.load_dataset("json", data_files=files)
    encoded = raw.map(lambda b: tokenizer(b["sentence"], truncation=True, max_length=args.max_length), batched=True)
    encoded = encoded.remove_columns(["sentence", "idx"])
    model = AutoModelForSequenceClassification.from_pretrained(name, num_labels=2)
    lora = settings.peft
    config = peft.LoraConfig(task_type=peft.TaskType.SEQ_CLS, r=lora.r, lora_alpha=lora.lora_alpha,
                             lora_dropout=lora.lora_dropout, target_modules=list(lora.target_modules))  # fmt: skip
    model = peft.get_peft_model(model, config)
    out = tempfile.mkdtemp(prefix="peer-")
    training_args = TrainingArguments(
        output_dir=out,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=128,
        max_steps=args.steps,
        learning_rate=args.lr,
        warmup_steps=int(settings.optim.warmup_ratio * args.steps),  # transformers 5 dropped warmup_ratio
        weight_decay=0.01,
        logging_steps=10,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=seed,
        dataloader_num_workers=0,
        **sampling_arguments(grouped),
    )

    def accuracy(pred):
        return {"accuracy": float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())}

    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=encoded["train"].shuffle(seed=seed),
        eval_dataset=encoded["validation"],
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=accuracy,
    )
    train = trainer.train()
    samples_per_s = train.metrics["train_samples_per_second"]
    mean_tokens = statistics.fmean(len(ids) for ids in encoded["train"]["input_ids"])  # random draws: the mean
    return {
        "samples_per_s": samples_per_s,
        "accuracy": trainer.evaluate()["eval_accuracy"],
        "tokens_per_s": samples_per_s * mean_tokens,
        "flops_per_token": training_flops_per_token(model),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=DEFAULT_DATA, help="SST-2's folder (smollm2: the folder of data folders)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--lr", type=float, default=None, help="2e-3 for MiniLM, 5e-4 (LoRA's default) for SmolLM2")
    parser.add_argument(
        "--model", choices=["minilm", "smollm2"], default="minilm", help="smollm2: bench/decoder_peers.py"
    )
    parser.add_argument("--task", choices=["sql", "instruct"], default="sql", help="smollm2: text->SQL or instructions")
    parser.add_argument("--rows", type=int, default=192, help="smollm2: training rows (one epoch)")
    parser.add_argument("--val-rows", type=int, default=100, help="smollm2: validation rows for the answer loss")
    parser.add_argument("--trl-lengths", type=int, nargs="*", help="smollm2: TRL bin lengths (default ~one batch)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one set of runs per seed")
    parser.add_argument("--peers", nargs="+", choices=list(PEERS), default=list(PEERS), help="HF Trainer samplers")
    parser.add_argument("extra", nargs="*", help="more peftlab overrides, e.g. dataset.group_by_length=false")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.model == "smollm2":
        import decoder_peers

        args.lr = args.lr or 5e-4
        args.data = str(Path(args.data).parent) if args.data == DEFAULT_DATA else args.data
        return decoder_peers.main(args)
    args.lr = args.lr or 2e-3
    if not (Path(args.data) / "train.jsonl").is_file():
        sys.exit(f"no SST-2 files in {args.data} (train.jsonl, validation.jsonl)")
    import torch

    import peftlab  # noqa: F401  (resolvers)

    machine = (
        f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"machine: {machine}; MiniLM + LoRA, SST-2, {args.steps} steps x {args.batch_size}, extra: {args.extra}")
    # MiniLM-L6: hidden 384, FFN 1536; SST-2 batches of 32 hold ~430 tokens (13.3 per sentence, grouped).
    peak = matmul_peak(tokens_per_batch=args.batch_size * 14, hidden=384, intermediate=1536)
    print("fp32 matmul peak (GFLOP/s): " + ", ".join(f"{k} {v:.1f}" for k, v in peak.items()))
    runs = {**{PEERS[p]: [] for p in args.peers}, "peftlab": []}
    for seed in args.seeds:
        cfg = compose_config(args, seed)
        phases = [(PEERS[p], run_peer, (cfg, args, seed, p == "grouped")) for p in args.peers]
        for name, runner, runner_args in [*phases, ("peftlab", run_peftlab, (cfg,))]:
            with PeakRss() as rss:
                runs[name].append({**runner(*runner_args), "peak_rss_mb": rss.mb})
            r = runs[name][-1]
            r["gflops"] = r["tokens_per_s"] * r["flops_per_token"] / 1e9
            print(f"seed {seed}  {name:26s} {r['samples_per_s']:8.1f} samples/s  {r['gflops']:6.1f} GFLOP/s "
                  f"({r['gflops'] / peak['peak']:.0%} of peak)  peak RSS {r['peak_rss_mb']:7.0f} MiB  "
                  f"dev accuracy {r['accuracy']:.4f}")  # fmt: skip
    for name, rs in runs.items():
        col = {k: [r[k] for r in rs] for k in rs[0]}
        print(f"{name:26s} samples/s {_mean_std(col['samples_per_s'], 1)}  GFLOP/s {_mean_std(col['gflops'], 1)}  "
              f"peak RSS {_mean_std(col['peak_rss_mb'], 0)} MiB  dev accuracy {_mean_std(col['accuracy'], 4)}  "
              f"over seeds {args.seeds}")  # fmt: skip
    ours = runs["peftlab"]
    for peer in args.peers:
        ratios = [o["samples_per_s"] / p["samples_per_s"] for p, o in zip(runs[PEERS[peer]], ours, strict=True)]
        print(f"ratio peftlab / {PEERS[peer]}: {_mean_std(ratios, 2)}x samples/s")
    share = [o["gflops"] / peak["peak"] for o in ours]
    print(f"peftlab useful FLOP/s: {_mean_std(share, 2)} of the measured matmul peak ({peak['peak']:.1f} GFLOP/s)")


def compose_config(args, seed: int):
    from hydra import compose, initialize_config_dir

    from peftlab.conf import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        out = f"paths.output_dir={tempfile.mkdtemp(prefix='ours-')}"
        return compose("config", overrides=[*overrides(args), f"seed={seed}", *args.extra, out])


def _mean_std(values: list[float], digits: int) -> str:
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


if __name__ == "__main__":
    main()

"""Throughput of bench/gpu_check.py: peftlab vs HF Trainer (its length grouping on) vs TRL SFTTrainer (packing,
padding-free), bf16 on a GPU, same model shape, rows (peftlab's encoder), LoRA and batch, in one process.

(a) SST-2 classification, GPT-2-124M shape (TRL has no classification trainer: two sides); (b) text-to-SQL,
SmolLM2-135M shape. Each line: samples/s, tokens/s (non-padding tokens trained on), CUDA peak memory, and model FLOPs
utilisation: useful FLOP/s (bench/useful_flops.py) over the chip's bf16 dense peak, measured in the same run as an
8192³ bf16 matmul. Target: ≥ 1.2× the better peer; larger batches show how much is launch overhead at this size.
"""

import math
import statistics
import time
from argparse import Namespace
from contextlib import contextmanager
from functools import partial

import torch
from gpu_checks import Skip
from useful_flops import training_flops_per_token

NO_VALIDATION = ["trainer.val_check_interval=null", "trainer.check_val_every_n_epoch=1000",
                 "~callbacks.model_checkpoint", "~callbacks.last_checkpoint"]  # fmt: skip


def matmul_peak(ctx) -> float:
    """FLOP/s of a large square matmul: bf16 on a GPU (the dense peak), fp32 on CPU; measured once per run."""
    if getattr(ctx, "peak", None):
        return ctx.peak
    n, cuda = ctx.sizes.throughput["matmul"], ctx.sizes.device == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    a, b = (torch.randn(n, n, device=ctx.sizes.device, dtype=dtype) for _ in range(2))
    best = 0.0
    for _ in range(5):
        reps = 10
        _sync(cuda)
        started = time.perf_counter()
        for _ in range(reps):
            a @ b
        _sync(cuda)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - started))
    ctx.peak = best
    print(f"matmul peak ({n}³ {str(dtype).removeprefix('torch.')}): {best / 1e12:.1f} TFLOP/s", flush=True)
    return best


def _sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


@contextmanager
def cuda_peak(device: str):
    """Peak CUDA memory (MiB) of the block: result["mb"]."""
    result = {"mb": 0.0}
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    yield result
    if device == "cuda":
        result["mb"] = torch.cuda.max_memory_allocated() / 2**20


def line(ctx, side: str, samples_s: float, tokens_s: float, peak_mb: float, flops_per_token: float) -> dict:
    mfu = tokens_s * flops_per_token / matmul_peak(ctx)
    print(f"  {side:34s} {samples_s:9.1f} samples/s {tokens_s:10.0f} tokens/s  peak {peak_mb:8.0f} MiB  "
          f"MFU {mfu:6.1%}", flush=True)  # fmt: skip
    return {"side": side, "samples_s": samples_s, "tokens_s": tokens_s, "mfu": mfu}


def ours(ctx, name: str, overrides: list[str], side: str = "peftlab") -> tuple:
    from gpu_checks import fit_run

    result = fit_run(ctx, name, [*overrides, *NO_VALIDATION])
    r = result.report
    tokens_s = r["train_tokens"] / r["train_time_s"]
    peak = r["peak_memory"].get("cuda_mb", 0.0)
    return result, line(ctx, side, r["samples_per_s"], tokens_s, peak, training_flops_per_token(result.module.model))


def hf_classifier(ctx, result, batch: int, steps: int) -> dict:
    """HF Trainer + peft LoRA (the model's peft defaults) on peftlab's encoded rows, length grouping on."""
    import peft
    from decoder_peers import common_arguments
    from throughput import sampling_arguments
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer, TrainingArguments

    s, tokenizer = result.settings, result.tokenizer
    train = result.datamodule.train_dataset
    model = AutoModelForSequenceClassification.from_pretrained(s.model.name_or_path, num_labels=2)
    model.config.pad_token_id = tokenizer.pad_token_id
    lora = {k: v for k, v in s.peft.fields.items() if k in ("r", "lora_alpha", "lora_dropout", "fan_in_fan_out")}
    config = peft.LoraConfig(task_type=peft.TaskType.SEQ_CLS, target_modules=list(s.peft.target_modules), **lora)
    model = peft.get_peft_model(model, config)
    common = common_arguments(s, Namespace(lr=s.peft.lr, device=ctx.sizes.device), s.seed, steps)
    common.pop("num_train_epochs")
    args = TrainingArguments(per_device_train_batch_size=batch, max_steps=steps, **common, **sampling_arguments(True))
    trainer = Trainer(model=model, args=args, train_dataset=train.shuffle(seed=s.seed),
                      data_collator=DataCollatorWithPadding(tokenizer))  # fmt: skip
    with cuda_peak(ctx.sizes.device) as peak:
        samples_s = trainer.train().metrics["train_samples_per_second"]
    mean_tokens = statistics.fmean(len(ids) for ids in train["input_ids"])  # random draws: the mean
    return line(
        ctx, "HF Trainer, grouped", samples_s, samples_s * mean_tokens, peak["mb"], training_flops_per_token(model)
    )


def check_throughput_sst2(ctx) -> str:
    t, figures = ctx.sizes.throughput, []
    for batch in t["batches"]:
        print(f"SST-2, GPT-2 shape, batch {batch}, {t['steps']} steps:", flush=True)
        overrides = [*ctx.gpt2, *ctx.sst2(), f"dataset.batch_size={batch}", "peft=lora", f"peft.lr={ctx.sizes.lr}",
                     f"trainer.max_steps={t['steps']}", "trainer.max_epochs=1000"]  # fmt: skip
        result, mine = ours(ctx, f"sst2-b{batch}", overrides)
        peer = hf_classifier(ctx, result, batch, t["steps"])
        figures.append(f"b{batch}: {mine['samples_s']:.0f} samples/s, {mine['samples_s'] / peer['samples_s']:.2f}× HF, "
                       f"MFU {mine['mfu']:.1%}")  # fmt: skip
    return "; ".join(figures)


def check_throughput_sql(ctx) -> str:
    """One epoch of the same rows per side; TRL packs them into bins of about one peftlab batch of tokens, and so
    does peftlab's own dataset.packing (bins of 512 tokens, as many per step as carry one grouped batch's tokens)."""
    from decoder_peers import answer_loss, encoded_splits, run_hf, run_trl

    t, figures = ctx.sizes.throughput, []
    try:
        import trl  # noqa: F401
    except ImportError as err:
        raise Skip("trl is not installed (bench/gpu_pack.sh carries its wheel)") from err
    for batch in t["sql_batches"]:
        rows = max(t["sql_rows"], 16 * batch)
        overrides = [*ctx.smollm2, *ctx.sql(), f"dataset.batch_size={batch}", f"dataset.max_train_rows={rows}",
                     "peft=lora", f"peft.lr={ctx.sizes.lr}", "trainer.max_epochs=1"]  # fmt: skip
        print(f"text-to-SQL, SmolLM2 shape, batch {batch}, {rows} rows, 1 epoch:", flush=True)
        result, mine = ours(ctx, f"sql-b{batch}", overrides)
        s, tokenizer = result.settings, result.tokenizer
        data = encoded_splits(s, tokenizer)
        tokens = sum(len(ids) for ids in data["train"]["input_ids"])
        val = data["validation"].select(range(min(64, len(data["validation"]))))
        args = Namespace(lr=s.peft.lr, device=ctx.sizes.device)
        bins = round(tokens / rows * batch)  # TRL's packed rows: about one peftlab batch of tokens each
        per_step = max(1, math.ceil(bins / 512))
        packing = ["dataset.packing=true", "dataset.packing_length=512", f"dataset.batch_size={per_step}"]
        _, packed = ours(ctx, f"sql-b{batch}-packed", [*overrides, *packing], side="peftlab, packed")
        sides = {"HF Trainer, grouped": partial(run_hf, None, args, data, s.seed, s, tokenizer),
                 "TRL SFTTrainer, packing": partial(run_trl, None, args, data, s.seed, s, tokenizer, bins)}  # fmt: skip
        peers = []
        for side, run in sides.items():
            with cuda_peak(ctx.sizes.device) as peak:
                out = run()
            tokens_s = tokens / out["train_s"]
            peers.append(line(ctx, side, rows / out["train_s"], tokens_s, peak["mb"],
                              training_flops_per_token(out["model"])))  # fmt: skip
            print(f"    val answer loss {answer_loss(out['model'], val, tokenizer):.4f}", flush=True)
        print(f"    peftlab val answer loss {answer_loss(result.module.model, val, tokenizer):.4f}", flush=True)
        best = max(peers, key=lambda p: p["tokens_s"])
        figures.append(f"b{batch}: {mine['tokens_s']:.0f} tokens/s, {mine['tokens_s'] / best['tokens_s']:.2f}× "
                       f"{best['side'].split(',')[0]}, MFU {mine['mfu']:.1%}; packed "
                       f"{packed['tokens_s'] / mine['tokens_s']:.2f}× grouped")  # fmt: skip
    return "; ".join(figures)


CHECKS = [("throughput_sst2", check_throughput_sst2), ("throughput_sql", check_throughput_sql)]

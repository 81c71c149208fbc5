"""Decoder mode of bench/throughput.py: SmolLM2-135M-Instruct + LoRA, peftlab vs the peers a user picks for SFT.

    python bench/throughput.py --model smollm2 --task sql --rows 192 --seeds 0 1 2
    python bench/throughput.py --model smollm2 --task instruct --rows 128 --seeds 0 1 2

Every side trains one epoch on the same `--rows` training rows (peftlab's own subset of the split), tokenised
once by peftlab's encoder (prompt + answer + EOS, the prompt masked from the loss), with the same LoRA, lr, warm-up,
weight decay and tokens per optimiser step; then one function scores every trained model's answer-token loss on the
same validation rows. The peers:
- TRL's SFTTrainer with the packing its docs recommend (`packing=True`: best-fit-decreasing bins of `max_length`
  tokens, padding-free with per-sequence position ids). Given its fastest settings on this CPU: fp32 and no gradient
  checkpointing (its defaults are bf16 and checkpointing on, both slower here), and bins of about one peftlab batch of
  tokens (its default 1,024 is printed as a second line with --trl-lengths). On a GPU (bench/gpu_throughput.py) every
  side trains in bf16.
- Plain HF Trainer + DataCollatorForSeq2Seq with its own length grouping.
Tokens/s counts every non-padding token trained on (prompt and answer), the same total on every side.
"""

import statistics
import tempfile
from pathlib import Path

from throughput import PeakRss, _mean_std, sampling_arguments
from useful_flops import matmul_peak, training_flops_per_token

DATA = {"sql": "text2sql_wikisql", "instruct": "gpteacher_codegen"}


def compose(args, seed: int):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from peftlab.conf import CONF_DIR

    overrides = [
        "model=smollm2", f"dataset={args.task}", f"dataset.data_dir={Path(args.data) / DATA[args.task]}",
        f"dataset.max_train_rows={args.rows}", "trainer.max_epochs=1", "trainer.check_val_every_n_epoch=1000",
        "trainer.enable_progress_bar=false", "~callbacks.progress_bar", "~callbacks.model_checkpoint",
        "~callbacks.last_checkpoint", "peft=lora", f"peft.lr={args.lr}", f"seed={seed}",
        f"paths.output_dir={tempfile.mkdtemp(prefix='ours-')}", *args.extra,
    ]  # fmt: skip
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def encoded_splits(settings, tokenizer) -> dict:
    """peftlab's own rows (its TextDataModule: load, check, encode, the max_train_rows subset), for every side."""
    from peftlab.data.datamodule import TextDataModule

    data = TextDataModule(settings.dataset, tokenizer, settings.shape, seed=settings.seed)
    data.prepare_data()
    return {"train": data.train_dataset.remove_columns(["prompt_length"]),
            "validation": data.val_dataset.remove_columns(["prompt_length"])}  # fmt: skip


def answer_loss(model, rows, tokenizer, batch_size: int = 16) -> float:
    """Mean cross-entropy over every answer token of `rows` (token-weighted): the one yardstick of all sides."""
    import torch
    from transformers import DataCollatorForSeq2Seq

    collate = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            batch = collate([rows[i] for i in range(start, min(start + batch_size, len(rows)))])
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            labels = batch["labels"][:, 1:]
            total += torch.nn.functional.cross_entropy(
                logits[:, :-1].flatten(0, 1).float(), labels.flatten(), ignore_index=-100, reduction="sum"
            ).item()
            count += int((labels != -100).sum())
    return total / count


def lora_config(settings):
    import peft

    lora = settings.peft
    return peft.LoraConfig(task_type=peft.TaskType.CAUSAL_LM, r=lora.r, lora_alpha=lora.lora_alpha,
                           lora_dropout=lora.lora_dropout, target_modules=list(lora.target_modules))  # fmt: skip


def common_arguments(settings, args, seed: int, steps: int) -> dict:
    """The peers' shared TrainingArguments; on a GPU (args.device, bench/gpu_throughput.py) in bf16."""
    device = getattr(args, "device", "cpu")
    return dict(
        output_dir=tempfile.mkdtemp(prefix="peer-"), learning_rate=args.lr, num_train_epochs=1,
        warmup_steps=int(settings.optim.warmup_ratio * steps), weight_decay=0.01, max_grad_norm=1.0,
        logging_steps=10, save_strategy="no", report_to=[], use_cpu=device == "cpu", bf16=device == "cuda",
        seed=seed, dataloader_num_workers=0,
    )  # fmt: skip


def run_peftlab(cfg, args, data) -> dict:
    from peftlab.run import fit

    result = fit(cfg)
    report = result.report
    return {"train_s": report["train_time_s"], "model": result.module.model, "steps": result.trainer.global_step}


def run_hf(cfg, args, data, seed: int, settings, tokenizer) -> dict:
    """HF Trainer + peft + DataCollatorForSeq2Seq (labels padded with -100), length-grouped batches."""
    import peft
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    model = peft.get_peft_model(
        AutoModelForCausalLM.from_pretrained(settings.model.name_or_path), lora_config(settings)
    )
    batch = settings.dataset.batch_size
    steps = -(-len(data["train"]) // batch)
    common = common_arguments(settings, args, seed, steps)
    training_args = TrainingArguments(per_device_train_batch_size=batch, **common, **sampling_arguments(grouped=True))
    trainer = Trainer(model=model, args=training_args, train_dataset=data["train"],
                      data_collator=DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100))  # fmt: skip
    runtime = trainer.train().metrics["train_runtime"]
    return {"train_s": runtime, "model": model, "steps": trainer.state.global_step}


def run_trl(cfg, args, data, seed: int, settings, tokenizer, max_length: int) -> dict:
    """TRL SFTTrainer, packing=True (best-fit decreasing, padding-free), our token ids and labels as given."""
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    model = AutoModelForCausalLM.from_pretrained(settings.model.name_or_path)
    tokens = sum(len(ids) for ids in data["train"]["input_ids"])
    steps = -(-tokens // max_length)  # about one bin per step
    config = SFTConfig(per_device_train_batch_size=1, packing=True, max_length=max_length,
                       gradient_checkpointing=False, **common_arguments(settings, args, seed, steps))  # fmt: skip
    train = data["train"].remove_columns(["attention_mask"])
    trainer = SFTTrainer(model=model, args=config, train_dataset=train, processing_class=tokenizer,
                         peft_config=lora_config(settings))  # fmt: skip
    runtime = trainer.train().metrics["train_runtime"]
    return {"train_s": runtime, "model": trainer.model, "steps": trainer.state.global_step}


def main(args) -> None:
    import torch
    from transformers import AutoTokenizer

    from peftlab.config import validate
    from peftlab.models.loading import model_source

    settings = validate(compose(args, args.seeds[0]))
    tokenizer = AutoTokenizer.from_pretrained(model_source(settings.model))  # converts the GGUF on the first use
    data = encoded_splits(settings, tokenizer)
    tokens = sum(len(ids) for ids in data["train"]["input_ids"])
    val = data["validation"].select(range(min(args.val_rows, len(data["validation"]))))
    batch_tokens = round(tokens / len(data["train"]) * settings.dataset.batch_size)
    trl_lengths = args.trl_lengths or [batch_tokens]
    print(f"machine: {torch.get_num_threads()} threads, torch {torch.__version__}; SmolLM2-135M + LoRA, "
          f"{args.task}: {len(data['train'])} rows = {tokens} training tokens, 1 epoch, batch "
          f"{settings.dataset.batch_size} (~{batch_tokens} tokens), lr {args.lr}; answer loss on {len(val)} "
          f"validation rows")  # fmt: skip
    peak = matmul_peak(tokens_per_batch=batch_tokens, hidden=576, intermediate=1536)
    print("fp32 matmul peak (GFLOP/s): " + ", ".join(f"{k} {v:.1f}" for k, v in peak.items()))
    sides = {f"TRL SFTTrainer, packing (bins of {n})": ("trl", n) for n in trl_lengths}
    sides |= {"HF Trainer, grouped": ("hf", None), "peftlab": ("peftlab", None)}
    runs = {name: [] for name in sides}
    for seed in args.seeds:
        cfg = compose(args, seed)
        for name, (kind, length) in sides.items():
            with PeakRss() as rss:
                if kind == "peftlab":
                    out = run_peftlab(cfg, args, data)
                elif kind == "hf":
                    out = run_hf(cfg, args, data, seed, settings, tokenizer)
                else:
                    out = run_trl(cfg, args, data, seed, settings, tokenizer, length)
            r = {"tokens_per_s": tokens / out["train_s"], "peak_rss_mb": rss.mb, "steps": out["steps"]}
            r["val_loss"] = answer_loss(out["model"], val, tokenizer)
            r["gflops"] = r["tokens_per_s"] * training_flops_per_token(out["model"]) / 1e9
            runs[name].append(r)
            print(f"seed {seed}  {name:38s} {r['tokens_per_s']:7.1f} tokens/s  {r['gflops']:6.1f} GFLOP/s "
                  f"({r['gflops'] / peak['peak']:.0%} of peak)  peak RSS {r['peak_rss_mb']:6.0f} MiB  "
                  f"val answer loss {r['val_loss']:.4f} after {r['steps']} steps", flush=True)  # fmt: skip
            del out
    for name, rs in runs.items():
        col = {k: [r[k] for r in rs] for k in rs[0]}
        print(f"{name:38s} tokens/s {_mean_std(col['tokens_per_s'], 1)}  val answer loss "
              f"{_mean_std(col['val_loss'], 4)}  peak RSS {_mean_std(col['peak_rss_mb'], 0)} MiB")  # fmt: skip
    ours = runs["peftlab"]
    for name in [n for n in runs if n != "peftlab"]:
        ratios = [o["tokens_per_s"] / p["tokens_per_s"] for p, o in zip(runs[name], ours, strict=True)]
        print(f"ratio peftlab / {name}: {_mean_std(ratios, 2)}x tokens/s")
    print(f"peftlab useful FLOP/s: {statistics.fmean(o['gflops'] for o in ours) / peak['peak']:.2f} of the peak")

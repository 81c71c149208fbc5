"""peftlab's DPO against TRL's DPOTrainer: same pairs, model, LoRA, beta, lr schedule and steps, in one process.

    python bench/dpo_peer.py --data <folder holding paradetox> --rows 64 --steps 16 --seeds 0 1 2
    python bench/dpo_peer.py --data ... --model smollm2_tiny --steps 4 --seeds 0     # a quick check of the bench

Both sides train on peftlab's own token ids (dataset=detox_pref through its encoder: prompt + " " + answer + EOS,
chosen = the neutral rewrite, rejected = the toxic source): TRL's DPOTrainer takes them pre-tokenised (its dataset
step is skipped), so no side gains from another tokenisation. Both compute the reference each step (peftlab:
objective.cache_reference=false; TRL: precompute_ref_log_probs=false, its default) with the adapter disabled (TRL:
ref_model=None + peft_config). Both train without dropout: TRL's DPOConfig.disable_dropout (default True) zeroes
every dropout, so our side sets peft.lora_dropout=0 (with LoRA's 0.1 on our side only, its validation loss was higher
by 0.016-0.017 on every seed). After training, one function (peftlab's answer_logps and preference_loss) scores both
trained adapters on the same validation pairs: DPO loss, reward accuracy and margin. Pairs/s and answer tokens/s
count training only; peak RSS is the process's, sampled over each side's training (the side that runs second starts
from what the first left: the order alternates by seed).
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from throughput import PeakRss, _mean_std

from peftlab.compat import prepare_process

prepare_process()


def compose(args, seed: int):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from peftlab.conf import CONF_DIR

    overrides = [
        f"model={args.model}", "dataset=detox_pref", f"dataset.data_dir={Path(args.data) / 'paradetox'}",
        f"dataset.max_train_rows={args.rows}", f"dataset.max_eval_rows={args.eval_rows}",
        f"dataset.batch_size={args.batch}", "dataset.group_by_length=false", "objective=dpo",
        f"objective.beta={args.beta}", "objective.cache_reference=false", "peft=lora", f"peft.lr={args.lr}",
        "peft.lora_dropout=0.0",  # TRL's DPOConfig.disable_dropout (default True) zeroes every dropout, LoRA's too
        f"trainer.max_steps={args.steps}", "trainer.check_val_every_n_epoch=1000", "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false", "~callbacks.progress_bar", "~callbacks.model_checkpoint",
        "~callbacks.last_checkpoint", f"seed={seed}", f"paths.output_dir={tempfile.mkdtemp(prefix='ours-')}",
    ]  # fmt: skip
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def pairs(settings, tokenizer) -> dict:
    """peftlab's encoded pairs (its TextDataModule), shared by both sides."""
    from peftlab.data.datamodule import TextDataModule

    data = TextDataModule(settings.dataset, tokenizer, settings.shape, seed=settings.seed)
    data.prepare_data()
    return {"train": data.train_dataset, "validation": data.val_dataset}


def as_trl_rows(rows) -> list[dict]:
    """Our rows in TRL's tokenised form: the shared prompt, then each answer (EOS included)."""
    out = []
    for row in rows:
        cut = row["prompt_length"]
        out.append({"prompt_ids": row["input_ids"][:cut], "chosen_ids": row["input_ids"][cut:],
                    "rejected_ids": row["rejected_input_ids"][cut:]})  # fmt: skip
    return out


def answer_tokens(rows) -> int:
    return sum((len(r["input_ids"]) - r["prompt_length"]) * 2 for r in rows)  # about: both answers per pair


def score(model, rows, tokenizer, beta: float) -> dict:
    """DPO loss, reward accuracy and margin of a trained adapter on `rows`, the reference its base (adapter off)."""
    import torch

    from peftlab.data.collators import PreferenceCollator
    from peftlab.modules.preference import answer_logps, both_answers, preference_loss, split_logps

    model.eval()
    collate = PreferenceCollator(tokenizer)
    losses, accuracy, margin = [], [], []
    with torch.inference_mode():
        for start in range(0, len(rows), 16):
            batch = collate([rows[i] for i in range(start, min(start + 16, len(rows)))])
            both = both_answers(batch)
            policy = split_logps(*answer_logps(model, both))
            with model.disable_adapter():
                reference = split_logps(*answer_logps(model, both))
            out = preference_loss("dpo", beta, 0.0, policy, reference)
            losses += out["loss"].tolist()
            accuracy += (out["chosen_reward"] > out["rejected_reward"]).float().tolist()
            margin += (out["chosen_reward"] - out["rejected_reward"]).tolist()
    mean = statistics.fmean
    return {"loss": mean(losses), "accuracy": mean(accuracy), "margin": mean(margin)}


def run_ours(cfg) -> dict:
    from peftlab.run import fit

    result = fit(cfg)
    return {"train_s": result.report["train_time_s"], "model": result.module.model}


def run_trl(settings, args, seed: int, rows) -> dict:
    import peft
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    class PretokenizedDPOTrainer(DPOTrainer):
        """Takes prompt_ids/chosen_ids/rejected_ids as given: the same ids as peftlab's side."""

        def _prepare_dataset(self, dataset, *unused, **unused_kw):
            return dataset

    from datasets import Dataset

    lora = settings.peft
    config = peft.LoraConfig(task_type=peft.TaskType.CAUSAL_LM, r=lora.r, lora_alpha=lora.lora_alpha,
                             lora_dropout=lora.lora_dropout, target_modules=list(lora.target_modules))  # fmt: skip
    arguments = DPOConfig(
        output_dir=tempfile.mkdtemp(prefix="trl-"), beta=args.beta, learning_rate=args.lr, max_steps=args.steps,
        per_device_train_batch_size=args.batch, warmup_steps=int(settings.optim.warmup_ratio * args.steps),
        weight_decay=0.01, max_grad_norm=1.0, lr_scheduler_type="linear", logging_steps=1, save_strategy="no",
        report_to=[], use_cpu=True, bf16=False, gradient_checkpointing=False, seed=seed, dataloader_num_workers=0,
        max_length=None, precompute_ref_log_probs=False,
    )  # fmt: skip
    from peftlab.models.loading import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(settings.model.name_or_path)
    trainer = PretokenizedDPOTrainer(model=model, args=arguments, train_dataset=Dataset.from_list(as_trl_rows(rows)),
                                     processing_class=load_tokenizer(settings.model), peft_config=config)  # fmt: skip
    runtime = trainer.train().metrics["train_runtime"]
    return {"train_s": runtime, "model": trainer.model}


def main(args) -> int:
    from peftlab.config import validate
    from peftlab.models.loading import load_tokenizer

    results = {"peftlab": [], "trl": []}
    for seed in args.seeds:
        cfg = compose(args, seed)
        settings = validate(cfg)
        tokenizer = load_tokenizer(settings.model)
        data = pairs(settings, tokenizer)
        seen = [data["train"][i % len(data["train"])] for i in range(args.steps * args.batch)]
        tokens = answer_tokens(seen)
        # Alternate which side goes first: peak RSS is the process's, and the second side starts from the first's.
        for side in ("peftlab", "trl") if seed % 2 == 0 else ("trl", "peftlab"):
            with PeakRss() as rss:
                run = run_ours(cfg) if side == "peftlab" else run_trl(settings, args, seed, data["train"])
            scores = score(run["model"], data["validation"], tokenizer, args.beta)
            results[side].append({**scores, "pairs_s": len(seen) / run["train_s"], "tokens_s": tokens / run["train_s"],
                                  "rss_mb": rss.mb})  # fmt: skip
            print(f"seed {seed} {side}: {results[side][-1]}", flush=True)
    print(f"\n{args.model}, {args.rows} pairs, {args.steps} steps of {args.batch}, beta {args.beta}, lr {args.lr}, "
          f"seeds {args.seeds}; validation: {args.eval_rows} pairs")  # fmt: skip
    print("| side | val DPO loss | reward accuracy | reward margin | pairs/s | answer tokens/s | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for side, rows in results.items():
        columns = (("loss", 4), ("accuracy", 3), ("margin", 3), ("pairs_s", 2), ("tokens_s", 1), ("rss_mb", 0))
        cells = [_mean_std([r[k] for r in rows], digits) for k, digits in columns]
        print(f"| {side} | " + " | ".join(cells) + " |")
    ratio = [a["tokens_s"] / b["tokens_s"] for a, b in zip(results["peftlab"], results["trl"], strict=True)]
    print(f"speed ratio peftlab / TRL (per seed): {', '.join(f'{r:.2f}' for r in ratio)}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the folder holding paradetox/{train,validation}.jsonl")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--eval-rows", type=int, default=64)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    sys.exit(main(parser.parse_args()))

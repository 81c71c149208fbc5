"""Detoxification with SmolLM2-135M: base, SFT adapter, SFT + DPO, scored on the same held-out ParaDetox rows.

    python bench/detox_dpo.py --data <folder holding paradetox> --rows 500 --eval-rows 200
    python bench/detox_dpo.py --data ... --model smollm2_tiny --rows 32 --eval-rows 8 --epochs 1   # a quick check

1. SFT: `train.py model=<model> dataset=detox peft=lora` on --rows rows (prompt -> the neutral rewrite);
2. its adapter is merged into the base (`python -m peftlab.export merge=true`), which becomes the base of
3. DPO: `train.py dataset=detox_pref objective=dpo objective.sft_weight=1 peft=lora` on the same rows (chosen = the
   rewrite, rejected = the toxic source itself), so the reference (the adapter disabled) is the SFT model, as in the
   DPO paper's recipe. The chosen answer's NLL is kept in the loss (--sft-weight, RPO): plain DPO at lr 5e-4 drove
   both answers' log-probs down (chosen -11 -> -114 nats within one epoch) and every answer to nonsense (BLEU 0.0).
Each model then answers the first --eval-rows rows of paradetox/validation (greedy, dataset=detox's prompt and
decoding). Scored: BLEU and ROUGE-L against the references (peftlab's metrics), and the copy rate — the share of
answers that repeat the toxic input: lower-cased, whitespace-joined, difflib similarity >= --copy-threshold (0.9:
a changed word or two in a sentence still counts as a copy).
"""

import argparse
import difflib
import json
import sys
import tempfile
import time
from pathlib import Path

from peftlab.compat import prepare_process

prepare_process()


def compose(args, *overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from peftlab.conf import CONF_DIR

    common = [
        f"model={args.model}", f"dataset.data_dir={Path(args.data) / 'paradetox'}",
        f"dataset.max_train_rows={args.rows}",
        f"dataset.max_eval_rows={args.eval_rows}", f"dataset.max_eval_generate_rows={args.eval_rows}",
        "peft=lora", f"trainer.max_epochs={args.epochs}", "trainer.enable_progress_bar=false",
        "~callbacks.progress_bar", f"seed={args.seed}",
    ]  # fmt: skip
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=[*common, *overrides])


def similar(a: str, b: str) -> float:
    def norm(text: str) -> str:
        return " ".join(text.lower().split())

    return difflib.SequenceMatcher(None, norm(a), norm(b)).ratio()


def answers(model, settings, tokenizer) -> tuple[list[str], list[str], list[str]]:
    """(toxic inputs, references, generated answers) of the held-out rows, with dataset=detox's prompt."""
    import torch

    from peftlab.data.datamodule import TextDataModule
    from peftlab.modules.generation import generate_answers

    data = TextDataModule(settings.dataset, tokenizer, "causal", seed=settings.seed)
    data.prepare_data()
    data.setup("validate")
    rows = data.val_dataset
    model.eval()
    predictions = []
    with torch.inference_mode():
        for batch in data.val_dataloader():
            predictions += generate_answers(model, tokenizer, batch, dict(settings.dataset.generation), causal=True)
    # The toxic input, read back from each row's prompt (byte-level BPE decodes exactly): the template around it cut.
    before, after = settings.dataset.prompt_template.split("{en_toxic_comment}")
    prompts = [tokenizer.decode(r["input_ids"][: r["prompt_length"]], skip_special_tokens=True) for r in rows]
    sources = [p.strip().removeprefix(before.strip()).removesuffix(after.strip()).strip() for p in prompts]
    references = [tokenizer.decode([t for t in r["labels"] if t >= 0], skip_special_tokens=True).strip() for r in rows]
    return sources, references, predictions


def score(sources, references, predictions, threshold: float) -> dict:
    from peftlab.metrics import text_metrics

    metrics = text_metrics(["bleu", "rougeL"], "")
    metrics.update(predictions, references)
    values = {k: float(v) for k, v in metrics.compute().items()}
    copies = [similar(p, s) >= threshold for p, s in zip(predictions, sources, strict=True)]
    return {**values, "copy_rate": sum(copies) / len(copies)}


def main(args) -> int:
    from peftlab.config import validate
    from peftlab.export import export_run
    from peftlab.models.loading import load_base_model, load_tokenizer
    from peftlab.run import fit

    out = Path(args.out or tempfile.mkdtemp(prefix="detox-dpo-"))
    minutes, table = {}, {}
    start = time.perf_counter()
    if (out / "sft_merged" / "config.json").is_file():  # --out of an earlier call: its SFT model is reused
        import transformers

        sft_model = transformers.AutoModelForCausalLM.from_pretrained(out / "sft_merged")
        minutes["sft"] = json.loads((out / "sft" / "metrics.json").read_text())["fit_time_s"] / 60
    else:
        sft_model = fit(compose(args, "dataset=detox", f"peft.lr={args.sft_lr}", f"paths.output_dir={out / 'sft'}"))
        sft_model = sft_model.module.model
        minutes["sft"] = (time.perf_counter() - start) / 60
        export_run(out / "sft", out / "sft_merged", merge=True)
    start = time.perf_counter()
    merged = [
        f"model.name_or_path={out / 'sft_merged'}",
        "model.init=null",
        "model.gguf=null",
        "model.twin_tokenizer=null",
    ]
    dpo_dir = out / f"dpo-lr{args.dpo_lr:g}-sft{args.sft_weight:g}"
    dpo = fit(compose(args, "dataset=detox_pref", "objective=dpo", f"objective.beta={args.beta}",
                      f"objective.sft_weight={args.sft_weight}", f"peft.lr={args.dpo_lr}",
                      f"paths.output_dir={dpo_dir}", *merged))  # fmt: skip
    minutes["dpo"] = (time.perf_counter() - start) / 60
    settings = validate(compose(args, "dataset=detox", "paths.output_dir=unused"))
    tokenizer = load_tokenizer(settings.model)
    base = load_base_model(settings.model, "causal", [], tokenizer.pad_token_id)
    for name, model in (("base", base), ("SFT", sft_model), ("SFT + DPO", dpo.module.model)):
        sources, references, predictions = answers(model, settings, tokenizer)
        table[name] = score(sources, references, predictions, args.copy_threshold)
        print(name, table[name], flush=True)
        for row in range(2):
            print(f"  toxic: {sources[row]!r}\n  reference: {references[row]!r}\n  {name}: {predictions[row]!r}")
    print(f"\n{args.model}, {args.rows} rows, {args.epochs} epoch(s) each; {args.eval_rows} held-out rows; "
          f"copy = similarity to the toxic input >= {args.copy_threshold}")  # fmt: skip
    print("| model | copy rate | BLEU | ROUGE-L | training minutes |\n|---|---|---|---|---|")
    spent = {"base": "-", "SFT": f"{minutes['sft']:.1f}", "SFT + DPO": f"{minutes['sft']:.1f} + {minutes['dpo']:.1f}"}
    for name, row in table.items():
        print(f"| {name} | {row['copy_rate']:.3f} | {row['bleu']:.4f} | {row['rougeL']:.4f} | {spent[name]} |")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the folder holding paradetox/{train,validation}.jsonl")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--eval-rows", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--sft-lr", type=float, default=2e-3)
    parser.add_argument("--dpo-lr", type=float, default=1e-4)
    parser.add_argument("--sft-weight", type=float, default=1.0, help="objective.sft_weight (RPO); 0: plain DPO")
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--copy-threshold", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="where the runs go (default: a temporary folder); an --out "
                        "holding sft_merged/ from an earlier call reuses that SFT model")  # fmt: skip
    sys.exit(main(parser.parse_args()))

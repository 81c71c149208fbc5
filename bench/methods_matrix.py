"""Family x PEFT method matrix on the offline twins -> docs/methods.md (trainable params, step time, pass).

    python bench/methods_matrix.py                 # CPU, fp32
    python bench/methods_matrix.py --device cuda   # GPU, bf16 autocast where supported

The methods are the conf/peft/*.yaml options (`none` aside), so a new method's YAML gets its column. Each cell:
load the family's twin, apply the method, train full-batch steps on a learnable toy batch until the loss has
fallen by 10 % (at most --steps), then save -> reload onto a fresh base and compare logits. "pass" = loss finite
and falling, reload identical (CPU: bit-identical; GPU: within 1e-3, bf16 autocast). The second table is each
method's capability record (its YAML's `capabilities`), as validation, export and serve read it.
"""

import argparse
import functools
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from peftlab.compat import prepare_process

prepare_process()  # as the command lines do, before peft is imported: bitsandbytes only for QLoRA

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

import peftlab  # noqa: E402,F401  (resolvers)
from peftlab.conf import CONF_DIR  # noqa: E402
from peftlab.config import validate  # noqa: E402
from peftlab.data.by_shape import COLLATORS, ENCODERS  # noqa: E402
from peftlab.errors import ConfigError  # noqa: E402
from peftlab.models.loading import load_base_model, load_tokenizer  # noqa: E402
from peftlab.models.method_hooks import after_optimizer_step, build_optimizer  # noqa: E402
from peftlab.models.methods import (  # noqa: E402
    apply_method,
    load_kwargs_for,
    load_trained,
    save_trained,
)
from peftlab.models.params import count_parameters  # noqa: E402
from peftlab.modules import build_module  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FAMILIES = ["minilm", "gpt2_tiny", "deberta_v3_tiny", "t5_tiny", "bloom_tiny", "smollm2_tiny"]
TEXTS = ["a great film", "a dull film", "great acting", "dull acting", "great story", "weak story", "great", "awful"]
LABELS = torch.tensor([1, 0, 1, 0, 1, 0, 1, 0])
LR = {"full": 1e-3, "ia3": 3e-2, "loraplus": 2e-3}  # others 1e-2 (LoRA+ trains B at 16x its lr)
NEAR = 1e-5  # a CPU reload within this, not bit-identical: AdaLoRA keeps only the ranks it did not mask


def compose_method(family: str, method: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[f"model={family}", f"peft={method}", "paths.output_dir=unused", *overrides])


def run_cell(family: str, method: str, steps: int, device: str) -> dict:
    try:
        settings = validate(compose_method(family, method))
    except ConfigError as err:
        return {"status": "rejected", "reason": str(err).split("not supported (", 1)[-1].removesuffix(")")}
    head = list(settings.model.head_modules)
    tokenizer = load_tokenizer(settings.model)

    def base():
        return load_base_model(
            settings.model,
            "classify",
            ["neg", "pos"],
            tokenizer.pad_token_id,
            **load_kwargs_for(settings.peft, head),
        ).to(device)

    torch.manual_seed(0)
    model = apply_method(base(), settings.peft, head, "classify").eval()
    batch = {k: v.to(device) for k, v in tokenizer(TEXTS, padding=True, return_tensors="pt").items()}
    labels = LABELS.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    factory = functools.partial(torch.optim.AdamW, lr=LR.get(method, 1e-2))
    optimizer = build_optimizer(model, factory, [{"params": trainable}], steps)  # LoRA+, AdaLoRA: their own
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda")
    losses, times = [], []
    while len(losses) < steps and not (len(losses) >= 5 and min(losses[-5:]) < 0.9 * losses[0]):
        start = time.perf_counter()
        with autocast:
            loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        after_optimizer_step(model, len(losses))
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        losses.append(loss.item())
    with tempfile.TemporaryDirectory() as folder:
        save_trained(model, settings.peft, head, Path(folder))
        reloaded = load_trained(base(), settings.peft, Path(folder)).eval()
        with torch.no_grad(), autocast:
            a, b = model(**batch).logits.float(), reloaded(**batch).logits.float()
    diff = (a - b).abs().max().item()
    same = diff == 0 if device == "cpu" else diff <= 1e-3
    falling = all(x == x for x in losses) and min(losses[-5:]) < 0.9 * losses[0]
    trainable, total = count_parameters(model)
    warm = times[2:] or times
    near = device == "cpu" and 0 < diff <= NEAR
    return {
        "status": ("pass" if same or near else "FAIL") if falling else "FAIL",
        "near": near,
        "trainable": trainable,
        "total": total,
        "ms": 1000 * sum(warm) / len(warm),
        "steps": len(losses),
        "loss": (losses[0], losses[-1]),
    }


# Preference pairs for the objective column (ParaDetox-like: the neutral rewrite chosen, the toxic source rejected).
PAIRS = {"en_toxic_comment": ["you are a total idiot", "this crap is stupid and so are you"],
         "en_neutral_comment": ["you are wrong", "this is not good"]}  # fmt: skip
PREFERENCE_STEPS = 8


def preference_cell(method: str, device: str) -> dict:
    """DPO where the method has a peft adapter to disable (the reference), else ORPO: PREFERENCE_STEPS full-batch
    steps on two pairs with the SmolLM2 twin; pass = the reward margin rose and the loss stayed finite."""
    for objective in ("dpo", "orpo"):
        try:
            pair_task = ("dataset=detox_pref", "dataset.data_dir=unused", f"objective={objective}")
            settings = validate(compose_method("smollm2_tiny", method, *pair_task), check_files=False)
            break
        except ConfigError as err:
            if "adapter disabled" not in str(err):
                return {"status": "rejected", "reason": str(err).split("not supported (", 1)[-1].removesuffix(")")}
    tokenizer = load_tokenizer(settings.model)
    torch.manual_seed(0)  # a decoder's LM head is its tied embedding: no task head, kept out of 4-bit
    base = load_base_model(settings.model, settings.shape, [], **load_kwargs_for(settings.peft, [])).to(device)
    model = apply_method(base, settings.peft, [], settings.shape)
    module = build_module(settings.shape, settings.dataset, model, tokenizer, objective=settings.objective)
    encoded = ENCODERS[settings.shape](tokenizer, settings.dataset)(PAIRS)
    rows = [{k: v[i] for k, v in encoded.items()} for i in range(len(PAIRS["en_toxic_comment"]))]
    batch = {k: v.to(device) for k, v in COLLATORS[settings.shape](tokenizer)(rows).items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    factory = functools.partial(torch.optim.AdamW, lr=LR.get(method, 1e-2) / (10 if method == "full" else 1))
    optimizer = build_optimizer(model, factory, [{"params": trainable}], PREFERENCE_STEPS)
    margins, times = [], []
    for step in range(PREFERENCE_STEPS):
        start = time.perf_counter()
        loss = module.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        after_optimizer_step(model, step)
        times.append(time.perf_counter() - start)
        margins.append(module.stats["rewards/margin"].item())
    rose = loss.item() == loss.item() and max(margins[1:]) > margins[0]
    warm = times[2:]
    return {"status": "pass" if rose else "FAIL", "objective": objective, "ms": 1000 * sum(warm) / len(warm),
            "margin": (margins[0], max(margins[1:]))}  # fmt: skip


def preference_rows(methods: list[str], device: str) -> tuple[list[str], bool]:
    lines = ["| method | objective | reward margin, step 1 → best of the next | ms / step | result |"]
    lines.append("|---|---|---|---|---|")
    passed = True
    for method in methods:
        r = preference_cell(method, device)
        if r["status"] == "rejected":
            lines.append(f"| {method} | refused: {r['reason']} | - | - | - |")
            continue
        passed &= r["status"] == "pass"
        first, best = r["margin"]
        lines.append(f"| {method} | {r['objective']} | {first:.4f} → {best:.4f} | {r['ms']:.1f} | {r['status']} |")
    return lines, passed


def capability_rows(methods: list[str]) -> list[str]:
    """Each method's record (composed on the default model: the record does not depend on it), reasons below."""
    lines = [
        "| `peft=` | implementation | adapter/ holds | merge=true | serve | 4-bit base | refuses |",
        "|---|---|---|---|---|---|---|",
    ]
    reasons = []
    for method in methods:
        peft = compose_method("minilm", method).peft
        caps = peft.capabilities
        target = f"`{peft._target_}`" if "_target_" in peft else "peftlab"
        merge = "whole model saved" if caps.adapter == "model" else "folds in"
        refuses = [f"{shape} tasks" for shape in caps.refused_shapes] + list(caps.refused_families)
        for what, why in (("merge=true", caps.not_mergeable), ("serve", caps.not_servable)):
            if why is not None:
                merge = "no" if what == "merge=true" else merge
                reasons.append(f"- `{method}`, {what}: {why}")
        lines.append(
            f"| `{method}` | {target} | {caps.adapter} | {merge} | {'yes' if caps.not_servable is None else 'no'} | "
            f"{'yes' if caps.base_4bit else '-'} | {', '.join(refuses) or '-'} |"
        )
    return [*lines, "", "Why not:", "", *reasons]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=250, help="most training steps per cell")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(REPO / "docs" / "methods.md"))
    args = parser.parse_args()
    methods = sorted(p.stem for p in (CONF_DIR / "peft").glob("*.yaml") if p.stem != "none")
    results = {(f, m): run_cell(f, m, args.steps, args.device) for f in FAMILIES for m in methods}
    cpu = f"{os.cpu_count()} CPU cores, {platform.machine()}"
    device = torch.cuda.get_device_name() if args.device == "cuda" else cpu
    lines = [
        "# PEFT methods x model families",
        "",
        f"Generated by `python bench/methods_matrix.py --device {args.device}` on {date.today()} "
        f"({device}, torch {torch.__version__}, {torch.get_num_threads()} threads). Do not edit by hand.",
        "",
        "Each cell: trainable parameters · mean time of one training step (batch of 8) · steps until the loss fell "
        f"by 10 % (at most {args.steps}) · result. `minilm` is the real packaged model (22 M); `*_tiny` are offline "
        "twins (random weights, real classes).",
        "",
    ]
    lines += ["| method | " + " | ".join(FAMILIES) + " |", "|---|" + "---|" * len(FAMILIES)]
    notes = []
    for method in methods:
        cells = []
        for family in FAMILIES:
            r = results[(family, method)]
            if r["status"] == "rejected":
                cells.append("rejected¹")
                notes.append(f"- {family} × {method}: {r['reason']}")
            else:
                status = r["status"] + ("²" if r["near"] else "")
                cells.append(f"{r['trainable']:,} · {r['ms']:.1f} ms · {r['steps']} steps · {status}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines.append("")
    objective_lines, objectives_pass = preference_rows(methods, args.device)
    lines += [
        "¹ rejected before loading, with this message (the method's `capabilities.refused_families` or "
        "`refused_shapes`):",
        "",
        *sorted(set(notes)),
        "",
        f"² reloaded within {NEAR:g} of the trained logits, not bit-identical: AdaLoRA's adapter keeps only the "
        "ranks it did not mask, so the reloaded model sums fewer (zero) terms in another order.",
        "",
        "## Preference objectives (DPO, ORPO) per method",
        "",
        f"`smollm2_tiny` on two ParaDetox-like pairs (`dataset=detox_pref`), {PREFERENCE_STEPS} full-batch steps: "
        "DPO where the method leaves a peft adapter to disable (the reference is the base with it disabled), "
        "ORPO (no reference) where it does not. pass = the reward margin rose and the loss stayed finite; the frozen "
        "base staying bit-identical is tests/test_preference.py's check.",
        "",
        *objective_lines,
        "",
        "## What each method can do besides training",
        "",
        "From each `peftlab/conf/peft/<method>.yaml` (`capabilities`): validation refuses the listed task shapes "
        "(config/tasks.py) and families (model_type) before loading; `python -m peftlab.export run=<run> merge=true "
        "out=<folder>` folds the adapter into the weights or says why not; `peftlab.serve` loads only peft adapters "
        "it can share a base with.",
        "",
        *capability_rows([*methods, "none"]),
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if objectives_pass and all(r["status"] in ("pass", "rejected") for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

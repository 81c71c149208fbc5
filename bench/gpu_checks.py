"""The correctness checks of bench/gpu_check.py. Each takes the Context, returns its figure, and raises on a failure
(AssertionError with what differed) or Skip (with why it cannot run here)."""

import csv
import signal
import statistics
import subprocess

import pytorch_lightning as pl
import torch

# Adapter weights of a resumed run vs the uninterrupted one: bit-identical on CPU; bf16-mixed GPU kernels may reorder
# sums between the two processes, so bf16's relative step (2^-8) bounds them there.
RESUME_RTOL, RESUME_ATOL = 2**-7, 1e-4
QLORA_LOGIT_TOL = 1e-4  # merged QLoRA vs the model as it trained: tests/test_export.py's tolerance on CPU


class Skip(Exception):
    """A check that cannot run here, with the reason (e.g. Lightning's FSDP on a machine without CUDA)."""


def fit_run(ctx, name: str, overrides: list[str], hardware: str | None = None):
    from peftlab.run import fit

    return fit(ctx.compose(name, overrides, hardware))


def steps(n: int) -> list[str]:
    """n optimiser steps with one validation at the end (an SST-2 epoch is longer than any run here)."""
    return [f"trainer.max_steps={n}", "trainer.max_epochs=100", f"trainer.val_check_interval={n}"]


def train_losses(result) -> list[float]:
    with (result.output_dir / "csv" / "metrics.csv").open() as f:
        return [float(r["train/loss_step"]) for r in csv.DictReader(f) if r.get("train/loss_step")]


def fresh_base(result) -> torch.nn.Module:
    from peftlab.models.loading import load_base_model

    s = result.settings
    labels = list(s.dataset.labels)
    return load_base_model(s.model, s.shape, labels, pad_token_id=result.tokenizer.pad_token_id).eval()


def eval_inputs(result, device, rows: int = 16) -> dict:
    data = result.datamodule
    batch = data.collator([data.val_dataset[i] for i in range(min(rows, len(data.val_dataset)))])
    return {k: batch[k].to(device) for k in ("input_ids", "attention_mask")}


@torch.no_grad()
def logits(model, inputs: dict) -> torch.Tensor:
    return model.eval().to(inputs["input_ids"].device)(**inputs).logits.float()


def check_lora_bf16(ctx) -> str:
    """bf16-mixed LoRA: the precision picked, loss falls, frozen base bit-identical, same logits from the reload."""
    from peft import PeftModel

    result = fit_run(
        ctx, "lora", [*ctx.gpt2, *ctx.sst2(), "peft=lora", f"peft.lr={ctx.sizes.lr}", *steps(ctx.sizes.train_steps)]
    )
    expected = "bf16-mixed" if ctx.sizes.device == "cuda" else "32-true"
    assert result.trainer.precision == expected, f"precision {result.trainer.precision}, expected {expected}"
    losses = train_losses(result)
    k = max(len(losses) // 4, 1)
    first, last = statistics.fmean(losses[:k]), statistics.fmean(losses[-k:])
    assert last < first, f"train loss did not fall: {first:.4f} -> {last:.4f}"
    head = result.settings.model.head_modules
    fresh = dict(fresh_base(result).named_parameters())
    frozen = [(n, p) for n, p in result.module.model.named_parameters() if not p.requires_grad]
    frozen = [(n, p) for n, p in frozen if not any(h in n.split(".") for h in head)]  # a fresh head is random
    changed = [n for n, p in frozen if not torch.equal(p.cpu(), fresh[_base_name(n)])]
    assert frozen and not changed, f"{len(changed)} frozen tensors changed, e.g. {changed[:2]}"
    reloaded = PeftModel.from_pretrained(fresh_base(result), result.output_dir / "adapter")
    inputs = eval_inputs(result, ctx.sizes.device)
    diff = (logits(result.module.model, inputs) - logits(reloaded, inputs)).abs().max().item()
    assert diff == 0.0, f"reloaded adapter's logits differ by {diff:.3g}"
    return (
        f"{expected}; train loss {first:.3f} -> {last:.3f}; {len(frozen)} frozen tensors bit-identical; reload = same"
    )


def _base_name(name: str) -> str:
    return name.replace("base_model.model.", "").replace(".base_layer", "")


class FourBitProbe(pl.Callback):
    """Where the 4-bit layers live while training and whether their packed data changes (Lightning's teardown moves
    the module to the CPU afterwards, so this is looked at from inside the fit)."""

    def on_train_start(self, trainer, pl_module) -> None:
        self.layers = [m for m in pl_module.modules() if type(m).__name__ == "Linear4bit"]
        self.devices = {str(m.weight.device.type) for m in self.layers}
        self.compute = {str(m.compute_dtype).removeprefix("torch.") for m in self.layers}
        self.before = [m.weight.data.clone() for m in self.layers]

    def on_train_end(self, trainer, pl_module) -> None:
        self.unchanged = sum(torch.equal(m.weight.data, b) for m, b in zip(self.layers, self.before, strict=True))


def check_qlora(ctx) -> str:
    """QLoRA: a 4-bit base on the device with bf16 compute (GPU), packed weights unchanged, merged export close."""
    from peftlab.export import export_run

    probe = ["+callbacks.four_bit_probe._target_=gpu_checks.FourBitProbe"]  # bench/ is on sys.path (gpu_check)
    result = fit_run(
        ctx,
        "qlora",
        [*ctx.gpt2, *ctx.sst2(), "peft=qlora", f"peft.lr={ctx.sizes.lr}", *steps(ctx.sizes.train_steps), *probe],
    )
    probe = next(c for c in result.trainer.callbacks if isinstance(c, FourBitProbe))
    compute = "bfloat16" if ctx.sizes.device == "cuda" and torch.cuda.is_bf16_supported() else "float32"
    assert probe.layers, "no Linear4bit layers: the base was not quantised"
    assert probe.devices == {ctx.sizes.device}, f"4-bit layers on {probe.devices}"
    assert probe.compute == {compute}, f"compute dtypes {probe.compute}, expected {compute}"
    assert probe.unchanged == len(probe.layers), f"{len(probe.layers) - probe.unchanged} 4-bit weights changed"
    exported = export_run(result.output_dir, ctx.folder("qlora-merged"), merge=True)
    diff = exported.trained_as_logit_diff
    assert exported.merged and diff is not None and diff < QLORA_LOGIT_TOL, f"merged vs trained Δlogit {diff}"
    memory = result.report["base_memory"]
    return (
        f"{len(probe.layers)} Linear4bit on {ctx.sizes.device}, compute {compute}, packed data unchanged; "
        f"base {memory['loaded_mb']:.0f} MiB (fp {memory['full_precision_mb']:.0f}); merged Δlogit {diff:.1e}"
    )


def check_generation_and_serve(ctx) -> str:
    """Generation validation (left-padded prompts) in the run's precision, then the server answering a batched
    /v1/completions request on the device with the one-at-a-time answers."""
    from fastapi.testclient import TestClient

    from peftlab.serve.app import create_app
    from peftlab.serve.registry import AdapterServer

    s = ctx.sizes
    overrides = [*ctx.smollm2, *ctx.sql(), "peft=lora", f"peft.lr={ctx.sizes.lr}", *steps(s.generation_steps)]
    result = fit_run(ctx, "generation", [*overrides, f"dataset.max_eval_generate_rows={s.batch}"])
    monitor = result.report["monitor"]
    scored = [h[monitor] for h in result.report["history"] if monitor in h]
    assert scored, f"no {monitor} in the validation history"
    data = result.datamodule
    mask = data.collator([data.val_dataset[i] for i in range(min(8, len(data.val_dataset)))])["prompt_attention_mask"]
    assert bool((mask[:, -1] == 1).all()), "prompts are not left-padded (a row ends in padding)"
    server = AdapterServer(device=s.device)
    server.add_adapter("sql", result.output_dir)
    assert next(server.backbone.parameters()).device.type == s.device
    questions = [f"How many rows of table {i} have a year after {1990 + 3 * i}?" for i in range(8)]
    with TestClient(create_app(server)) as client:
        ask = {"model": "sql", "prompt": questions, "temperature": 0}  # max_tokens: the run's generation settings
        response = client.post("/v1/completions", json=ask)
    assert response.status_code == 200, response.text[:300]
    batched = [c["text"] for c in sorted(response.json()["choices"], key=lambda c: c["index"])]
    alone = [server.predict("sql", q)["answer"] for q in questions]
    same = sum(a == b for a, b in zip(batched, alone, strict=True))
    # Random weights give near-tied logits, where padding's rounding may flip a greedy token: most, not all, agree.
    assert same * 2 >= len(questions), f"only {same}/{len(questions)} batched answers equal the one-at-a-time ones"
    return (f"{result.trainer.precision}; {monitor} {scored[-1]:.3f}; prompts left-padded; served on {s.device}: "
            f"{len(batched)} prompts in one request, {same}/{len(batched)} equal to one-at-a-time")  # fmt: skip


def check_fsdp(ctx) -> str:
    """hardware=fsdp on one GPU: adapter/ gathered and written; its predictions agree with the plain GPU run's."""
    if ctx.sizes.device != "cuda":
        raise Skip("Lightning's FSDP needs CUDA; its gather is tested on CPU (tests/test_sharded_gather.py)")
    from peft import PeftModel

    overrides = [*ctx.gpt2, *ctx.sst2(), "peft=lora", f"peft.lr={ctx.sizes.lr}", *steps(ctx.sizes.train_steps)]
    fsdp = fit_run(ctx, "fsdp", overrides, hardware="fsdp")
    plain_dir = ctx.folder("lora")  # check_lora_bf16's run: the same overrides on hardware=gpu
    if not (plain_dir / "metrics.json").is_file():
        fit_run(ctx, "lora", overrides)
    inputs = eval_inputs(fsdp, ctx.sizes.device, rows=64)
    ours = logits(PeftModel.from_pretrained(fresh_base(fsdp), fsdp.output_dir / "adapter"), inputs)
    theirs = logits(PeftModel.from_pretrained(fresh_base(fsdp), plain_dir / "adapter"), inputs)
    agree = (ours.argmax(-1) == theirs.argmax(-1)).float().mean().item()
    assert agree >= 0.9, f"FSDP's adapter agrees with the plain run's on {agree:.0%} of 64 rows"
    two = _two_gpus(ctx) if torch.cuda.device_count() >= 2 else "one GPU: DDP/FSDP on two not run"
    return f"{fsdp.trainer.strategy.__class__.__name__}: adapter/ gathered; argmax agreement {agree:.0%}; {two}"


def _two_gpus(ctx) -> str:
    """DDP and FSDP on two GPUs, as users start them (train.py launches the second rank)."""
    results = []
    for hardware in ("ddp", "fsdp"):
        overrides = [*ctx.gpt2, *ctx.sst2(), "peft=lora", *steps(ctx.sizes.train_steps // 2), "hardware.devices=2"]
        proc = subprocess.run(ctx.cli(f"{hardware}2", overrides, hardware), capture_output=True, text=True)
        assert proc.returncode == 0, f"hardware={hardware} devices=2: {proc.stderr[-400:]}"
        assert (ctx.folder(f"{hardware}2") / "adapter").is_dir()
        results.append(hardware)
    return f"{' and '.join(results)} on 2 GPUs wrote adapter/"


def check_resume(ctx) -> str:
    """kill -9 mid-run, then resume=auto: the final weights equal an uninterrupted run's (bf16 tolerance on GPU)."""
    from faults import interrupt

    n = ctx.sizes.resume_steps
    every = max(n // 6, 2)
    overrides = [*ctx.gpt2, *ctx.sst2(), "peft=lora", f"trainer.max_steps={n}", "trainer.max_epochs=100",
                 "+logger.csv.flush_logs_every_n_steps=1", "~callbacks.model_checkpoint",
                 f"+callbacks.last_checkpoint.every_n_train_steps={every}", "resume=auto"]  # fmt: skip
    reference = subprocess.run(ctx.cli("resume-reference", overrides), capture_output=True, text=True)
    assert reference.returncode == 0, reference.stderr[-400:]
    killed_at = interrupt(ctx.cli("resume", overrides), ctx.folder("resume"), n // 2, signal.SIGKILL)
    saved = _last(ctx.folder("resume"))["global_step"]
    resumed = subprocess.run(ctx.cli("resume", overrides), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-400:]
    want, got = _last(ctx.folder("resume-reference")), _last(ctx.folder("resume"))
    assert got["global_step"] == want["global_step"] == n
    worst = max((got["state_dict"][k] - v).abs().max().item() for k, v in want["state_dict"].items())
    close = [torch.allclose(got["state_dict"][k], v, RESUME_RTOL, RESUME_ATOL) for k, v in want["state_dict"].items()]
    assert all(close), f"resumed weights differ from the uninterrupted run's by up to {worst:.3g}"
    return f"killed at step {killed_at}, resumed from {saved}, {n} steps; max |Δw| vs uninterrupted {worst:.2g}"


def _last(run) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)


CHECKS = [
    ("lora_bf16", check_lora_bf16),
    ("qlora", check_qlora),
    ("generation_serve", check_generation_and_serve),
    ("fsdp", check_fsdp),
    ("resume", check_resume),
]

"""Whether a compiled training step pays (issue 30): eager against `torch.compile` on the fixed shape of the length
bucket that carries the most tokens, the compile counted, and the share of an eager step spent in matrix multiplies
(no compiler removes those; fusing the rest bounds what compiling can win).

    python bench/compiled_step.py model=smollm2 dataset=sql dataset.data_dir=../shared/data/text2sql_wikisql
    python bench/compiled_step.py --steps 20 model=minilm dataset=sst2 dataset.data_dir=../shared/data/sst2
    python bench/compiled_step.py --device cuda ...   # the default where CUDA is available (not yet run on one)

The step is the run's own: the job's module is built as a fit builds it (run/training.py's build_job_module), then
forward + loss + backward + AdamW on one training batch, repeated. Compiled: the model the loss calls (a causal LM's
backbone, modules/causal_loss.py) compiled in place with `dynamic=False` and torch's dropout (dynamo cannot trace
fast_dropout.py's numpy masks); the loss code around it stays eager, as in a run. Eager and compiled blocks alternate.
A run of N steps of that one shape would see N·eager / (compile + N·compiled); a real run has one shape per bucket
length, and each pays its own compile.
"""

import argparse
import collections
import os
import statistics
import tempfile
import time

import torch

MATMUL_OPS = (
    "aten::mm",
    "aten::addmm",
    "aten::bmm",
    "aten::baddbmm",
    "aten::_scaled_dot_product_flash_attention_for_cpu",
)


def build(overrides: list[str], device: torch.device):
    """The run's module (built as a fit builds it), its optimiser, and one training batch of the bucket length that
    carries the most tokens."""
    from hydra import compose, initialize_config_dir

    from peftlab.conf import CONF_DIR
    from peftlab.run.settings import job_settings
    from peftlab.run.training import build_job_module

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, f"paths.output_dir={tempfile.mkdtemp(prefix='compiled-')}"])
    job, module, _ = build_job_module(job_settings(cfg), device)
    module.train()
    job.datamodule.setup("fit")
    batches = [b for _, b in zip(range(64), job.datamodule.train_dataloader(), strict=False)]
    tokens = collections.Counter()
    for b in batches:
        tokens[b["input_ids"].shape] += b["input_ids"].numel()
    common = tokens.most_common(1)[0][0]
    batch = next(b for b in batches if b["input_ids"].shape == common)
    module.to(device)
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    params = [p for p in module.parameters() if p.requires_grad]
    return module, module.optimizer_factory(params), batch


def timed_steps(module, optimizer, batch, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        with torch.autocast("cuda", torch.bfloat16, enabled=batch["input_ids"].is_cuda):  # GPU runs: bf16-mixed
            loss = module.loss(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if batch["input_ids"].is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return times


def step_profile(module, optimizer, batch, top: int = 6) -> tuple[float, list[tuple[str, float]]]:
    """Share of one eager step's time inside matmul kernels (self time of the aten ops above on a CPU, GEMM kernels
    on a GPU), and the largest of the rest: where a compiler's fusion could win."""
    from torch.profiler import ProfilerActivity, profile

    cuda = batch["input_ids"].is_cuda
    with profile(activities=[ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU]) as prof:
        timed_steps(module, optimizer, batch, 1)
    events = [e for e in prof.key_averages() if (e.self_device_time_total if cuda else e.self_cpu_time_total) > 0]

    def spent(event) -> float:
        return event.self_device_time_total if cuda else event.self_cpu_time_total

    def is_matmul(event) -> bool:
        return event.key in MATMUL_OPS or (cuda and any(k in event.key.lower() for k in ("gemm", "cutlass", "nvjet")))

    total = sum(spent(e) for e in events)
    rest = sorted((e for e in events if not is_matmul(e)), key=lambda e: -spent(e))
    return sum(spent(e) for e in events if is_matmul(e)) / total, [(e.key, spent(e) / total) for e in rest[:top]]


def compiled_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """What a compiled run would compile: the model the loss calls, and the backbone where the causal loss runs it
    and the LM head itself (modules/causal_loss.py)."""
    from peftlab.modules.causal_loss import backbone_and_head

    parts = backbone_and_head(model)
    return [parts[0]] if parts else [model]


def torch_dropout(model: torch.nn.Module) -> int:
    """FastDropout's numpy masks stop dynamo (it cannot trace numpy's generator): a compiled step draws torch's
    masks, which inductor generates inside its fused kernels."""
    from peftlab.models.fast_dropout import FastDropout

    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, FastDropout):
                setattr(parent, name, torch.nn.Dropout(child.p))
                swapped += 1
    return swapped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per side and round")
    parser.add_argument("--rounds", type=int, default=3, help="eager and compiled blocks alternate this many times")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("overrides", nargs="*", help="training overrides: model=, dataset=, peft=, ...")
    args = parser.parse_args()
    # A fresh inductor cache: the compile a first run of this shape pays (later runs on the machine reuse it).
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="inductor-"))
    torch.manual_seed(0)
    module, optimizer, batch = build(args.overrides, torch.device(args.device))
    print(f"batch shape {tuple(batch['input_ids'].shape)}, torch threads {torch.get_num_threads()}")
    timed_steps(module, optimizer, batch, args.warmup)
    fast = statistics.median(timed_steps(module, optimizer, batch, args.steps))
    share, rest = step_profile(module, optimizer, batch)
    swapped = torch_dropout(module.model)
    targets = compiled_modules(module.model)
    for target in targets:
        target.compile(dynamic=False)  # in place: whoever calls the module (the causal loss calls the backbone) runs it
    first = timed_steps(module, optimizer, batch, 1)[0]
    timed_steps(module, optimizer, batch, args.warmup)
    times = {"eager": [], "compiled": []}
    compiled_calls = [target._compiled_call_impl for target in targets]
    for _ in range(args.rounds):  # alternating blocks: a slow spell of the machine hits both sides
        for side in ("eager", "compiled"):
            for target, call in zip(targets, compiled_calls, strict=True):
                target._compiled_call_impl = call if side == "compiled" else None
            times[side] += timed_steps(module, optimizer, batch, args.steps)
    eager, compiled = (statistics.median(times[side]) for side in ("eager", "compiled"))
    compile_s = first - compiled
    print(f"eager {fast * 1e3:.0f} ms/step as the run trains (CPU: numpy dropout); matmul kernels {share:.0%} of its "
          f"{args.device} time (removing all the rest: at most {1 / share:.2f}x)")  # fmt: skip
    print("largest of the rest: " + ", ".join(f"{name} {part:.1%}" for name, part in rest))
    print(f"eager {eager * 1e3:.0f} ms/step with torch's dropout ({swapped} swapped), compiled {compiled * 1e3:.0f} "
          f"ms/step ({eager / compiled:.2f}x; {fast / compiled:.2f}x the run's step), first compiled step "
          f"{first:.1f} s (compile ≈ {compile_s:.1f} s)")  # fmt: skip
    for n in (300, 1000, 10000):
        print(f"a run of {n} steps of this shape against the run's step: {n * fast / (compile_s + n * compiled):.2f}x")


if __name__ == "__main__":
    main()

"""How much of the machine a training run uses: useful FLOPs per token and this machine's measured matmul peak.

Useful work is the matmuls a LoRA step cannot avoid: per non-padding token, forward 2·W and activation gradients 2·W
over the W weights of the encoder's linear layers (embeddings are lookups; the pooler and head see one token per
sequence), plus 2·T for the trainable weights' gradients. Attention's score matmuls are left out (short sequences).
"""

import time

HEAD_NAMES = ("pooler", "classifier", "score", "lm_head")


def linear_weights(model) -> int:
    """Weights of the nn.Linear layers every token passes through (the head and pooler excluded)."""
    import torch

    return sum(
        m.weight.numel()
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and not any(h in name for h in HEAD_NAMES)
    )


def training_flops_per_token(model) -> float:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return 4.0 * linear_weights(model) + 2.0 * trainable


def matmul_gflops(m: int, k: int, n: int, seconds: float = 2.0) -> float:
    """fp32 GFLOP/s of an (m×k)@(k×n) matmul at torch's thread setting, best of repeated timing windows."""
    import torch

    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(3):  # warm-up: oneDNN/MKL pick their kernels on first use
        a @ b
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        reps, started = 0, time.perf_counter()
        while time.perf_counter() - started < 0.2:
            a @ b
            reps += 1
        best = max(best, 2.0 * m * k * n * reps / (time.perf_counter() - started) / 1e9)
    return best


def matmul_peak(tokens_per_batch: int, hidden: int, intermediate: int) -> dict:
    """The peak a run is measured against: a large square matmul and the model's own FFN shape."""
    square = matmul_gflops(2048, 2048, 2048)
    ffn = matmul_gflops(tokens_per_batch, hidden, intermediate)
    return {"square_2048": square, f"ffn_{tokens_per_batch}x{hidden}x{intermediate}": ffn, "peak": max(square, ffn)}

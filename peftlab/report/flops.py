"""Training-compute estimate, the same formula for every method so the report's FLOPs axis compares like with like.

Per non-padding token: forward 2·N (N = all parameters the forward pass uses: the base plus the method's own);
backward 2·N for the activation gradients, which flow back through the frozen base as well, plus 2·N_trainable for
the weight gradients, which a frozen base does not compute. So training ≈ (4·N + 2·N_trainable) · tokens; full
fine-tuning gives the usual 6·N·tokens. Attention's sequence-length term and the head-only shortcut (backward stops
at the head) are left out: both are small for these lengths and would make the estimate method-specific.
"""

FORMULA = "training FLOPs ≈ (4·N_total + 2·N_trainable) · train tokens (forward 2·N, backward 2·N + 2·N_trainable)"


def training_flops(total_params: int, trainable_params: int, tokens: int) -> float:
    return float(4 * total_params + 2 * trainable_params) * tokens
